"""Block attention: block masks (FlexAttention on CUDA, dense SDPA mask on CPU), positions, KV-cache reuse."""
