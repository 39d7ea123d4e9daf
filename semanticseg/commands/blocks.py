"""Block-attention commands: distill, eval-blocks."""
