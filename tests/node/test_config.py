"""node.toml validation: every error names the file and the field."""

import pytest

from node import config as node_config
from pcnode.errors import ConfigError
from tests.federation import make_federation


@pytest.fixture
def home(tmp_path):
    return make_federation(tmp_path, ["tax", "bank"]).homes["tax"]


def test_valid_config_loads(home):
    cfg = node_config.load(home)
    assert cfg.name == "tax"
    assert set(cfg.peers) == {"bank"}


def test_missing_file_names_the_file_and_fix(tmp_path):
    with pytest.raises(ConfigError, match=r"node\.toml: no such file.*pcnode init"):
        node_config.load(tmp_path)


def _edit(home, old, new):
    p = home / "node.toml"
    text = p.read_text()
    assert old in text
    p.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("[grpc]\nhost", "[grpc]\nport = \"abc\"\nhost", r"\[grpc\] port: must be an integer"),
        ('name = "tax"', 'name = "Tax!"', r"\[node\] name"),
        ('key = "keys/signing.key"', 'key = "keys/missing.key"', r"\[signing\] key: file .* does not exist"),
        ('[node]', '[node\n', r"not valid TOML"),
    ],
)
def test_invalid_fields_are_named(home, old, new, message):
    if "port" in new:
        # replace the existing port line instead of adding a duplicate key
        p = home / "node.toml"
        lines = p.read_text().splitlines()
        i = lines.index("[grpc]")
        lines = [ln for j, ln in enumerate(lines) if not (j > i and ln.startswith("port") and j < i + 3)]
        lines.insert(i + 1, 'port = "abc"')
        p.write_text("\n".join(lines))
    else:
        _edit(home, old, new)
    with pytest.raises(ConfigError, match=message) as err:
        node_config.load(home)
    assert "node.toml" in str(err.value)


def test_bad_port_range(home):
    p = home / "node.toml"
    text = p.read_text()
    import re

    p.write_text(re.sub(r"(\[http\]\nhost = \"127.0.0.1\"\nport = )\d+", r"\g<1>70000", text))
    with pytest.raises(ConfigError, match=r"\[http\] port: must be an integer 1-65535, got 70000"):
        node_config.load(home)


def test_peer_add_validates_address(home):
    with pytest.raises(ConfigError, match="HOST:PORT"):
        node_config.add_peer(home, "operator", "nohostport")
    node_config.add_peer(home, "operator", "127.0.0.1:9")
    assert node_config.load(home).peers["operator"].address == "127.0.0.1:9"
