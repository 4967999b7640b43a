#!/usr/bin/env python3
"""The function of the seed's chapter 11: video-infer calls it with the network's raw
float32 output as the event (bytes) and the capture time in unix nanoseconds as
context["messageTimestamp"]; what it returns tells video-infer what to do with the frame.

handler: for the demo network of make-media.py (brightness of each pixel): a frame is kept
when it is bright. detect: the seed's person detector for an SSD model (rows of 7 floats:
image id, class, score, left, top, right, bottom), without numpy."""
import array

LOCATION = "var/db/baetyl/image/{}.jpg"  # relative to video-infer's work dir
TOPIC = "video/infer/result"
CLASSES = {1: "person"}


def _floats(event):
    out = array.array("f")
    out.frombytes(event)
    return out


def handler(event, context):
    """Keeps and reports bright frames; dark ones are reported and discarded."""
    data = _floats(event)
    brightness = sum(data) / len(data) if data else 0.0
    ts = context["messageTimestamp"]
    res = {
        "brightness": brightness,
        "imageDiscard": brightness < 0.5,
        "publishTopic": TOPIC,
        "messageTimestamp": int(ts / 1000000),  # milliseconds, as in the seed
    }
    if not res["imageDiscard"]:
        res["imageLocation"] = LOCATION.format(ts)
    return res


def detect(event, context):
    """The seed's handler: persons with a score of at least 0.6."""
    data = _floats(event)
    objects, scores = [], {}
    for i in range(0, len(data) - 6, 7):
        clazz, score = int(data[i + 1]), float(data[i + 2])
        if clazz not in CLASSES:
            continue
        name = CLASSES[clazz]
        scores[name] = max(scores.get(name, 0.0), score)
        if score < 0.6:
            continue
        objects.append({"class": name, "score": score, "left": float(data[i + 3]),
                        "top": float(data[i + 4]), "right": float(data[i + 5]),
                        "bottom": float(data[i + 6])})
    ts = context["messageTimestamp"]
    res = {
        "imageDiscard": not objects,
        "imageObjects": objects,
        "imageScores": scores,
        "publishTopic": TOPIC,
        "messageTimestamp": int(ts / 1000000),
    }
    if objects:
        res["imageLocation"] = LOCATION.format(ts)
    return res
