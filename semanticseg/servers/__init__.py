"""Local servers the stages talk to: the offline LLM (llm_server) and Label Studio (labelstudio_server)."""
