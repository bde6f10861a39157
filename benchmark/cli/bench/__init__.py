"""``leapbench bench``: memory per method and T, step time against its floor, rollout against diffusers."""
