"""vLLM engines shared by the rollout and teacher stages: building and stopping them, the
tokenizer check, and the worker extension that reloads weights in place. vLLM itself is
imported lazily, inside the functions that need it."""
