"""Machinery the teacher, select and learner stages share: reading an LM head from a model
folder, the final hidden states that predict each response token, and joining signal shards."""
