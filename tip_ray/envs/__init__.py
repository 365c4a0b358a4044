"""Environments a rollout runs in: the single-turn default, and tool calling (Hermes format).

An environment is looked up by name (`registry.load_environment`): built-ins, or installed
packages that register one under the ``tip_ray.environments`` entry-point group. YAML only ever
names an environment; it never imports a module.
"""
