"""Segmenter commands: train-segmenter, segment, evaluate."""
