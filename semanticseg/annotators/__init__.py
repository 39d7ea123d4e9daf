"""Annotators: propose cuts for a document given its candidates and a granularity target in tokens."""

from semanticseg.annotators.base import Annotator, get_annotator

__all__ = ["Annotator", "get_annotator"]
