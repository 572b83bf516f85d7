"""CLI: federation init, node init, peer add — key modes, errors as one line, --json."""

import json
import stat

from tests.federation import pcnode


def test_init_creates_private_keys_0600_and_json_output(tmp_path):
    fed = tmp_path / "fed"
    pcnode("federation", "init", fed)
    out = json.loads(pcnode("init", tmp_path / "tax", "--name", "tax", "--federation", fed,
                            "--grpc-port", 7001, "--http-port", 7002, "--json").stdout)
    assert out["name"] == "tax"
    for key in [fed / "ca.key", tmp_path / "tax/keys/signing.key", tmp_path / "tax/tls/node.key"]:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    pcnode("peer", "add", tmp_path / "tax", "bank", "127.0.0.1:7003")
    assert "bank" in (tmp_path / "tax/node.toml").read_text()


def test_expected_errors_are_one_line_without_traceback(tmp_path):
    proc = pcnode("status", tmp_path / "nowhere", check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ")
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = pcnode("init", tmp_path / "x", "--name", "Bad Name", "--federation", tmp_path, check=False)
    assert proc.returncode == 1 and "invalid node name" in proc.stderr


def test_federation_init_refuses_to_overwrite(tmp_path):
    pcnode("federation", "init", tmp_path / "fed")
    proc = pcnode("federation", "init", tmp_path / "fed", check=False)
    assert proc.returncode == 1 and "exists already" in proc.stderr
