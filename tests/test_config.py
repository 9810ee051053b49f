import tomllib

import pytest

from tagmill.config import Config, ConfigError, config_from_dict, load_config, to_toml
from tagmill.jobs.cli import _overrides, build_parser


def test_defaults_round_trip_through_toml():
    cfg = load_config(None)
    assert config_from_dict(tomllib.loads(to_toml(cfg))) == cfg


def test_file_values_override_defaults(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[run]\ndate = "2026-01-02"\n[mining]\nmin_label_images = 3\n'
                    'tier_weights = { click = 0.2, contact = 0.5, in_conversation = 0.95 }\n')
    cfg = load_config(path)
    assert cfg.run.date == "2026-01-02"
    assert cfg.mining.min_label_images == 3
    assert cfg.mining.tier_weights == {"click": 0.2, "contact": 0.5, "in_conversation": 0.95}
    assert cfg.mining.retention_days == Config().mining.retention_days


@pytest.mark.parametrize("data, key, words", [
    ({"mining": {"min_lable_images": 3}}, "mining.min_lable_images", "did you mean 'min_label_images'"),
    ({"minning": {}}, "minning", "did you mean 'mining'"),
    ({"mining": {"min_label_images": "ten"}}, "mining.min_label_images", "expected int"),
    ({"mining": {"min_label_images": True}}, "mining.min_label_images", "expected int"),
    ({"mining": {"label_tier": "purchase"}}, "mining.label_tier", "use one of click, contact, in_conversation"),
    ({"run": {"date": "20/11/2026"}}, "run.date", "YYYY-MM-DD"),
    ({"spark": {"master": "localhost"}}, "spark.master", "spark://HOST:PORT"),
    ({"mining": {"tier_weights": {"click": 0.3}}}, "mining.tier_weights", "each a weight"),
    ({"demo": {"images_per_listing": [3, 1]}}, "demo.images_per_listing", "1 <= min <= max"),
])
def test_bad_values_name_the_key_and_the_fix(data, key, words):
    with pytest.raises(ConfigError) as err:
        config_from_dict(data)
    assert err.value.key == key
    assert words in str(err.value)


def test_missing_file_and_bad_toml_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="no file at"):
        load_config(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[run\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_command_line_overrides():
    args = build_parser().parse_args(["mine-logs", "--date", "2026-11-20", "--master", "spark://127.0.0.1:7077",
                                      "--set", "mining.min_label_images=4", "--set", "mining.label_tier=contact"])
    assert _overrides(args) == {
        "mining": {"min_label_images": 4, "label_tier": "contact"},
        "run": {"date": "2026-11-20"},
        "spark": {"master": "spark://127.0.0.1:7077"},
    }
    cfg = load_config(None, _overrides(args))
    assert (cfg.mining.min_label_images, cfg.spark.master) == (4, "spark://127.0.0.1:7077")
