"""Annotation commands: candidates, propose, adjudicate, llm serve."""
