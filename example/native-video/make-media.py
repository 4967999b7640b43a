#!/usr/bin/python3
"""Writes the demo model and video of example/native-video under a Baetyl work dir:

  <workdir>/var/db/baetyl/infer-model/brightness.cfg, brightness.weights
      a Darknet network of one 1x1 convolution: the mean of B, G and R of each pixel
  <workdir>/var/db/baetyl/video-data/demo.avi
      30 s at 10 fps, 320x240 MJPEG: a bright second, then a dark one, and so on

Nothing is downloaded. Needs python3-opencv (scripts/deps.sh installs it).
Usage: make-media.py WORKDIR   (e.g. /usr/local)"""
import os
import struct
import sys

import cv2
import numpy as np

FPS, SECONDS, WIDTH, HEIGHT = 10, 30, 320, 240


def write_model(d):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "brightness.cfg"), "w") as f:
        f.write("[net]\nwidth=4\nheight=4\nchannels=3\n\n"
                "[convolutional]\nfilters=1\nsize=1\nstride=1\npad=0\nactivation=linear\n")
    with open(os.path.join(d, "brightness.weights"), "wb") as f:
        # Darknet header: major, minor, revision (int32), images seen (int64 from 0.2 on),
        # then the layer's bias and its 3 weights (float32).
        f.write(struct.pack("<iiiq", 0, 2, 0, 0))
        f.write(struct.pack("<4f", 0.0, 1 / 3, 1 / 3, 1 / 3))


def write_video(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp.avi"
    w = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"MJPG"), FPS, (WIDTH, HEIGHT))
    if not w.isOpened():
        sys.exit(f"cannot write {tmp}")
    for i in range(FPS * SECONDS):
        second = i // FPS
        level = 210 if second % 2 == 0 else 30
        frame = np.full((HEIGHT, WIDTH, 3), level, np.uint8)
        # A square crossing the picture, so saved frames differ from one another.
        x = (i * 4) % (WIDTH - 40)
        cv2.rectangle(frame, (x, 100), (x + 40, 140), (0, 0, 255), -1)
        w.write(frame)
    w.release()
    os.replace(tmp, path)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    db = os.path.join(sys.argv[1], "var", "db", "baetyl")
    write_model(os.path.join(db, "infer-model"))
    write_video(os.path.join(db, "video-data", "demo.avi"))
    print(f"model in {db}/infer-model, video in {db}/video-data/demo.avi")


if __name__ == "__main__":
    main()
