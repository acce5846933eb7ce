"""Naive per-image, per-threshold implementations of wsolevaluation's metrics, written from the definitions
(../shared/research/wsolevaluation.md §2) for the tests. Deliberately slow and independent of wsolbench."""

import cv2
import numpy as np


def iou(a, b):
    """Inclusive-coordinate IoU of two boxes."""
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
    inter = iw * ih
    union = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - inter
    return inter / union if union > 0 else 0.0


def boxes_at(scoremap, tau, multi_contour):
    """Boxes of a score map at threshold tau, thresholding the full map with cv2 as the reference does."""
    q = (scoremap * 255).astype(np.uint8)
    h, w = q.shape
    _, binary = cv2.threshold(q, int(tau * np.max(q)), 255, cv2.THRESH_BINARY)
    contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[-2]
    if len(contours) == 0:
        return [[0, 0, 0, 0]]
    if not multi_contour:
        contours = [max(contours, key=cv2.contourArea)]
    boxes = []
    for contour in contours:
        x, y, bw, bh = cv2.boundingRect(contour)
        boxes.append([x, y, min(x + bw, w - 1), min(y + bh, h - 1)])
    return boxes


def best_iou(scoremap, gt_boxes, tau, multi_contour):
    return max(iou(p, g) for p in boxes_at(scoremap, tau, multi_contour) for g in gt_boxes)


def hit_counts(scoremaps, gt_boxes, thresholds, deltas, multi_contour, correct=None):
    """counts[delta][t] = number of images with best IoU >= delta/100 at thresholds[t] (and correct[i])."""
    counts = {d: np.zeros(len(thresholds), dtype=np.int64) for d in deltas}
    for i, (s, g) in enumerate(zip(scoremaps, gt_boxes)):
        if correct is not None and not correct[i]:
            continue
        for t, tau in enumerate(thresholds):
            value = best_iou(s, g, tau, multi_contour)
            for d in deltas:
                counts[d][t] += value >= d / 100
    return counts


def max_box_acc(scoremaps, gt_boxes, thresholds, deltas, multi_contour):
    """{delta: (MaxBoxAcc in percent, first best threshold index)}."""
    counts = hit_counts(scoremaps, gt_boxes, thresholds, deltas, multi_contour)
    return {d: (counts[d].max() * 100.0 / len(scoremaps), int(np.argmax(counts[d]))) for d in deltas}


def pxap(scoremaps, pixel_labels, thresholds):
    """PxAP by explicit precision/recall at each threshold edge, pooled over pixels (ignore=255 dropped)."""
    scores = np.concatenate([s.ravel() for s in scoremaps])
    labels = np.concatenate([m.ravel() for m in pixel_labels])
    keep = labels != 255
    scores, labels = scores[keep], labels[keep] == 1
    edges = list(thresholds) + [1.0, 2.0, 3.0]
    positives = labels.sum()
    cuts = edges[::-1][1:]  # predictions "score >= cut" for cut = 2.0 (k = 0, empty), 1.0, thresholds descending
    total, previous_recall = 0.0, 0.0
    for k, cut in enumerate(cuts):
        predicted = scores >= cut
        tp = np.sum(predicted & labels)
        fp = np.sum(predicted & ~labels)
        recall = tp / positives
        if k >= 1 and tp + fp > 0:
            total += tp / (tp + fp) * (recall - previous_recall)
        previous_recall = recall
    return 100 * total
