#!/usr/bin/env bash
# Debian packages the project needs: libusb for open3d's import, chromium for the report tests, WordNet
# (the taxonomy rebalancing tags against), tesseract with English and Chinese data (the second OCR engine),
# and the fonts text rendering may use (Noto CJK for Chinese, Liberation and DejaVu for Latin text).
# As root they are installed; otherwise the exact command is printed and the script fails.
set -euo pipefail
packages=(libusb-1.0-0 chromium wordnet-base tesseract-ocr tesseract-ocr-eng tesseract-ocr-chi-sim fonts-noto-cjk
          fonts-liberation2 fonts-dejavu-core fontconfig)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing system packages; run: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "installing system packages: ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
