"""SAM training: synthetic and COCO data, losses, simulated interactive clicks, metrics, CLIs.

Only torch, numpy, Pillow, OpenCV and pycocotools are imported. The serving gateway does not need
this package.
"""
