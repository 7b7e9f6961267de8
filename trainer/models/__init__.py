"""Model definitions (torch only at import time: no package-level imports here)."""
