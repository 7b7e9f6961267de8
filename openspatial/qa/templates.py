"""English and Chinese question and answer templates, with paraphrases, per sub-task.

Placeholders: [A], [B], [C] are object references (category, or category plus the colour of its drawn box);
{name} fields are filled from the sample's parameters. Answer templates receive the formatted answer.
"""

from __future__ import annotations

# English and Chinese name of every category the procedural generator and the adapters' label maps (NYU40:
# Hypersim, ScanNet sequences) produce; tests/openspatial/test_qa.py checks that none is missing. A category
# outside this table (free-text labels of ScanNet or Matterport3D) is named as is in English, and a Chinese
# sample that would name it is generated in English instead (`UntranslatedCategory`).
CATEGORY_NAMES = {
    "table": ("table", "桌子"), "chair": ("chair", "椅子"), "sofa": ("sofa", "沙发"), "bed": ("bed", "床"),
    "cabinet": ("cabinet", "柜子"), "bookshelf": ("bookshelf", "书架"), "lamp": ("floor lamp", "落地灯"),
    "plant": ("potted plant", "盆栽"), "tv": ("TV", "电视"), "box": ("cardboard box", "纸箱"), "vase": ("vase", "花瓶"),
    "wall": ("wall", "墙"), "floor": ("floor", "地板"), "door": ("door", "门"), "window": ("window", "窗户"),
    "picture": ("picture", "画"), "counter": ("counter", "台面"), "blinds": ("blinds", "百叶窗"),
    "desk": ("desk", "书桌"), "shelves": ("shelves", "置物架"), "curtain": ("curtain", "窗帘"),
    "dresser": ("dresser", "五斗柜"), "pillow": ("pillow", "枕头"), "mirror": ("mirror", "镜子"),
    "floor mat": ("floor mat", "地垫"), "clothes": ("clothes", "衣服"), "ceiling": ("ceiling", "天花板"),
    "books": ("books", "书"), "refrigerator": ("refrigerator", "冰箱"), "television": ("television", "电视机"),
    "paper": ("paper", "纸"), "towel": ("towel", "毛巾"), "shower curtain": ("shower curtain", "浴帘"),
    "whiteboard": ("whiteboard", "白板"), "person": ("person", "人"), "night stand": ("night stand", "床头柜"),
    "toilet": ("toilet", "马桶"), "sink": ("sink", "水槽"), "bathtub": ("bathtub", "浴缸"), "bag": ("bag", "包"),
    "otherstructure": ("other structure", "其他结构"), "otherfurniture": ("other furniture", "其他家具"),
    "otherprop": ("other object", "其他物品"),
}
COLOUR_NAMES = {"red": ("red", "红色"), "green": ("green", "绿色"), "blue": ("blue", "蓝色"),
                "yellow": ("yellow", "黄色"), "magenta": ("magenta", "品红色"), "cyan": ("cyan", "青色")}
WORDS = {
    "left": ("left", "左边"), "right": ("right", "右边"), "front": ("in front", "前方"),
    "back": ("behind", "后方"), "front_left": ("front-left", "左前方"), "front_right": ("front-right", "右前方"),
    "back_left": ("back-left", "左后方"), "back_right": ("back-right", "右后方"),
    "toward": ("toward the camera", "朝向相机"), "away": ("away from the camera", "背对相机"),
    "facing_left": ("to the left", "朝左"), "facing_right": ("to the right", "朝右"),
    "forward": ("forward", "向前"), "backward": ("backward", "向后"), "move_left": ("to the left", "向左"),
    "move_right": ("to the right", "向右"), "turn_left": ("turned left", "向左转"),
    "turn_right": ("turned right", "向右转"), "no_turn": ("did not turn", "没有转向"),
    "longest": ("longest dimension", "最长边"), "height": ("height", "高度"),
}
# Egocentric relations as they read between two objects: "is [A] <phrase> [B]?" / "[A]在[B]的<phrase>吗？".
RELATION_PHRASES = {
    "left": ("to the left of", "左边"), "right": ("to the right of", "右边"), "above": ("above", "上方"),
    "below": ("below", "下方"), "in_front": ("in front of", "前面"), "behind": ("behind", "后面"),
}
LANGUAGES = ("en", "zh")

QUESTIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "distance": {"en": ("How far apart are [A] and [B] (closest points, in metres)?",
                        "What is the gap between [A] and [B] in metres?"),
                 "zh": ("[A]和[B]之间的最近距离是多少米？", "[A]与[B]相距多少米？")},
    "object_size": {"en": ("What is the {measure} of [A] in metres?", "How large is the {measure} of [A], in metres?"),
                    "zh": ("[A]的{measure}是多少米？", "请估计[A]的{measure}（米）。")},
    "depth": {"en": ("How far in front of the camera is the centre of [A], in metres?",
                     "What is the depth of [A] from the camera in metres?"),
              "zh": ("[A]的中心在相机前方多少米？", "[A]距离相机的深度是多少米？")},
    "relative_size": {"en": ("Which is larger, [A] or [B]?", "Between [A] and [B], which one takes up more volume?"),
                      "zh": ("[A]和[B]哪个更大？", "[A]与[B]相比，哪个体积更大？")},
    "egocentric_position": {"en": ("From the camera's viewpoint, is [A] {relation} [B]?",
                                   "Seen from the camera, is [A] {relation} [B]?"),
                            "zh": ("从相机视角看，[A]在[B]的{relation}吗？", "在这张图中，[A]是否位于[B]的{relation}？")},
    "allocentric_direction": {"en": ("If you stand at [A] facing [B], where is [C]?\n{options}",
                                     "Standing at [A] and looking toward [B], in which direction is [C]?\n{options}"),
                              "zh": ("如果你站在[A]处面向[B]，[C]在你的哪个方向？\n{options}",
                                     "站在[A]的位置看向[B]，[C]位于哪个方向？\n{options}")},
    "proximity": {"en": ("Which is closer to [A]: [B] or [C]?", "Is [B] or [C] nearer to [A]?"),
                  "zh": ("[B]和[C]哪个离[A]更近？", "离[A]更近的是[B]还是[C]？")},
    "height_comparison": {"en": ("Which reaches higher, [A] or [B]?", "Is the top of [A] or of [B] higher?"),
                          "zh": ("[A]和[B]哪个更高？", "[A]的顶部和[B]的顶部哪个更高？")},
    "camera_motion": {"en": ("How did the camera move from the first image to the second?\n{options}",
                             "Between image 1 and image 2, what camera motion happened?\n{options}"),
                      "zh": ("从第一张图到第二张图，相机是如何运动的？\n{options}", "相机从图1到图2发生了什么运动？\n{options}")},
    "relative_pose": {"en": ("Give the camera's change from image 1 to image 2: yaw and pitch in degrees, "
                             "translation in metres.",
                             "Estimate the relative camera pose between the two images (yaw, pitch, distance)."),
                      "zh": ("给出相机从图1到图2的变化：偏航角、俯仰角（度）和平移距离（米）。",
                             "估计两张图之间相机的相对位姿（偏航、俯仰、距离）。")},
    "object_camera_distance": {"en": ("In which image is the camera closer to [A], image 1 or image 2?",
                                      "Is [A] nearer to the camera in the first or the second image?"),
                               "zh": ("在哪张图中相机离[A]更近，图1还是图2？", "[A]在第一张图还是第二张图中离相机更近？")},
    "correspondence": {"en": ("The object marked in {colour} in image 1 is which labelled object in image 2?\n{options}",
                              "Which labelled object in the second image is the {colour}-marked object of the first?\n{options}"),
                       "zh": ("图1中用{colour}框标出的物体是图2中的哪个标注物体？\n{options}",
                              "第一张图中{colour}框标记的物体对应第二张图中的哪个？\n{options}")},
    "instance_counting": {"en": ("How many different {category_plural} appear across these images?",
                                 "Counting each object once, how many {category_plural} are shown in these views?"),
                          "zh": ("这些图片中一共出现了几个不同的{category}？", "每个物体只算一次，这些视角中有多少个{category}？")},
    "unseen_pair_distance": {"en": ("[A] appears in image 1 and [B] in image 2. How far apart are they (closest points, metres)?",
                                    "What is the distance in metres between [A] (image 1) and [B] (image 2)?"),
                             "zh": ("[A]出现在图1中，[B]出现在图2中。它们之间的最近距离是多少米？",
                                    "图1中的[A]和图2中的[B]相距多少米？")},
    "birdseye_position": {"en": ("Seen from above, with image 1's viewing direction as forward, where is [B] relative to [A]?\n{options}",
                                 "In a top-down view where forward is the direction camera 1 faces, in which direction is [B] from [A]?\n{options}"),
                          "zh": ("从俯视角度看，以图1的拍摄方向为前方，[B]在[A]的哪个方向？\n{options}",
                                 "俯视图中以相机1的朝向为前，[B]位于[A]的什么方位？\n{options}")},
    "scene_caption": {"en": ("Describe the 3D layout of this room.", "Summarise which objects are in this scene and how they are arranged."),
                      "zh": ("描述这个房间的三维布局。", "概括这个场景中有哪些物体以及它们的摆放关系。")},
    "grounding_3d": {"en": ("Give the 3D box of [A] in the camera frame (x right, y down, z forward): centre and size in metres.",
                            "Locate [A] in 3D camera coordinates: its box centre and its dimensions in metres."),
                     "zh": ("给出[A]在相机坐标系（x向右、y向下、z向前）中的三维框：中心和尺寸（米）。",
                            "请给出[A]在相机坐标系下的三维包围框中心与尺寸（米）。")},
    "orientation": {"en": ("Which way is [A] facing?\n{options}", "In which direction does the front of [A] point?\n{options}"),
                    "zh": ("[A]朝向哪个方向？\n{options}", "[A]的正面指向哪里？\n{options}")},
    "appearance_order": {"en": ("In what order do these objects first appear in the image sequence: {objects}?",
                                "List {objects} in the order they first come into view."),
                         "zh": ("这些物体在图像序列中首次出现的顺序是什么：{objects}？", "请按首次出现的先后顺序排列：{objects}。")},
}

# Answer templates: {answer} is the formatted value (a reference, a number with unit, a letter, a list...).
ANSWERS: dict[str, tuple[str, str]] = {
    "number_m": ("{answer} m.", "{answer}米。"),
    "object": ("{answer}.", "{answer}。"),
    "yes_no": ("{answer}.", "{answer}。"),
    "letter": ("{answer}", "{answer}"),
    "image": ("Image {answer}.", "图{answer}。"),
    "count": ("{answer}.", "{answer}个。"),
    "text": ("{answer}", "{answer}"),
}
YES_NO = {True: ("Yes", "是"), False: ("No", "不是")}
