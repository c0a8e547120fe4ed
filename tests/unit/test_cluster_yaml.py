"""cluster.yaml is a valid `ray up` config by Ray's own validation."""

from pathlib import Path

import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CONFIG = Path(__file__).resolve().parents[2] / "cluster.yaml"


def test_cluster_yaml_passes_rays_validation():
    config = yaml.safe_load(CONFIG.read_text())
    prepared = prepare_config(config)
    validate_config(prepared)  # raises jsonschema.ValidationError when invalid
    assert prepared["provider"]["type"] == "local"
    head = " ".join(prepared["head_start_ray_commands"])
    assert "omnigent serve --address=auto" in head
    assert "omnigent ray-start" in head and "-- --head" in head
    assert "--gcs-ft" in head.split("-- --head")[0]  # head fault tolerance on by default
    workers = " ".join(prepared["worker_start_ray_commands"])
    assert "omnigent ray-start" in workers and "--address=$RAY_HEAD_IP:6379" in workers
    everything = " ".join(
        str(c)
        for key in ("head_start_ray_commands", "worker_start_ray_commands", "setup_commands")
        for c in prepared[key]
    )
    assert "ray stop" not in everything


def test_a_broken_config_is_refused():
    import jsonschema
    import pytest

    config = yaml.safe_load(CONFIG.read_text())
    prepared = prepare_config(config)
    prepared["upscaling_speed"] = "fast"
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepared)
