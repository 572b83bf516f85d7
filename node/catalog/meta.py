"""Directory core metadata (seeds/002 §2.2.1 item 6) and its validation.

The core metadata of a government information resource (政务信息资源目录核心元数据):

=====================  =====================  ==========================
field                  Chinese                here
=====================  =====================  ==========================
classification         信息资源分类            ``classification``
name                   信息资源名称            ``name`` (``--name``)
resource code          信息资源代码            ``code`` (``--code``)
provider               信息资源提供方          ``provider``
provider code          信息资源提供方代码      ``provider_code``
summary                信息资源摘要            ``summary``
format                 信息资源格式            ``format`` (from the source)
information items      信息项信息              ``columns`` (name, type, description)
sharing attribute      共享属性                ``share`` (``--share``)
open attribute         开放属性                ``open``
update cycle           更新周期                ``update_cycle``
publish date           发布日期                ``publish_date``
related resource codes 关联资源代码            ``related``
=====================  =====================  ==========================

Extra fields kept with them: ``level`` (分级 L1-L4), ``key_column``, and for
conditional sharing the ``share_condition`` (共享条件).
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from pathlib import Path
from typing import Any

from pcnode.errors import InvalidInput

#: Sensitivity levels (分级), least to most sensitive.
LEVELS = ("L1", "L2", "L3", "L4")

#: Sharing attribute (共享属性), seeds/003: 无条件共享 / 有条件共享 / 不予共享.
SHARES = {"unconditional": "无条件共享", "conditional": "有条件共享", "none": "不予共享"}

#: Open attribute (开放属性): 无条件开放 / 有条件开放 / 不予开放.
OPENS = {"unconditional": "无条件开放", "conditional": "有条件开放", "none": "不予开放"}

#: Update cycle (更新周期).
UPDATE_CYCLES = {
    "realtime": "实时",
    "daily": "每日",
    "weekly": "每周",
    "monthly": "每月",
    "quarterly": "每季度",
    "yearly": "每年",
    "irregular": "不定期",
}

#: Declared types of information items; values failing them are counted by the profile.
COLUMN_TYPES = ("string", "integer", "float", "date", "boolean", "resident_id")

#: Resource codes: letters, digits, '_', '-', '.', 1-64 characters, starting alphanumeric.
CODE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

#: Keys accepted at the top level of a ``--meta`` TOML file.
META_KEYS = {
    "classification",
    "name",
    "provider",
    "provider_code",
    "summary",
    "format",
    "open",
    "update_cycle",
    "publish_date",
    "related",
    "share_condition",
    "columns",
}


def validate_code(code: str) -> str:
    """Return ``code`` if it is a valid resource code, else InvalidInput."""
    if not isinstance(code, str) or not CODE_PATTERN.match(code):
        raise InvalidInput(
            f"invalid dataset code {code!r}",
            hint="use 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit",
        )
    return code


def validate_level(level: str) -> str:
    """Return ``level`` (upper-cased) if it is L1-L4, else InvalidInput."""
    value = str(level).upper()
    if value not in LEVELS:
        raise InvalidInput(f"invalid level {level!r}", hint="use one of L1, L2, L3, L4")
    return value


def validate_share(share: str) -> str:
    """Return ``share`` if it is a sharing attribute, else InvalidInput."""
    if share not in SHARES:
        raise InvalidInput(
            f"invalid share value {share!r}",
            hint="use unconditional (无条件共享), conditional (有条件共享) or none (不予共享)",
        )
    return share


def load_meta_file(path: str | Path) -> dict[str, Any]:
    """Read a ``--meta`` TOML file, with errors naming the file and field."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInput(f"{path}: no such metadata file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInput(f"{path}: cannot read: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise InvalidInput(f"{path}: not valid TOML: {error}") from None
    return validate_meta(raw, where=str(path))


def validate_meta(raw: dict[str, Any], where: str = "metadata") -> dict[str, Any]:
    """Check a metadata mapping (from TOML or JSON); return a normalised copy."""
    if not isinstance(raw, dict):
        raise InvalidInput(f"{where}: expected a table of metadata fields")
    unknown = sorted(set(raw) - META_KEYS)
    if unknown:
        raise InvalidInput(
            f"{where}: unknown metadata field(s): {', '.join(unknown)}",
            hint=f"known fields: {', '.join(sorted(META_KEYS))}",
        )
    out: dict[str, Any] = {}
    for key in ("classification", "name", "provider", "provider_code", "summary", "format",
                "share_condition"):
        if key in raw:
            if not isinstance(raw[key], str):
                raise InvalidInput(f"{where}: {key}: expected a string")
            out[key] = raw[key].strip()
    if "open" in raw:
        if raw["open"] not in OPENS:
            raise InvalidInput(
                f"{where}: open: invalid value {raw['open']!r}",
                hint="use unconditional (无条件开放), conditional (有条件开放) or none (不予开放)",
            )
        out["open"] = raw["open"]
    if "update_cycle" in raw:
        if raw["update_cycle"] not in UPDATE_CYCLES:
            raise InvalidInput(
                f"{where}: update_cycle: invalid value {raw['update_cycle']!r}",
                hint=f"use one of {', '.join(UPDATE_CYCLES)}",
            )
        out["update_cycle"] = raw["update_cycle"]
    if "publish_date" in raw:
        out["publish_date"] = _date(raw["publish_date"], f"{where}: publish_date")
    if "related" in raw:
        related = raw["related"]
        if not isinstance(related, list) or not all(isinstance(r, str) for r in related):
            raise InvalidInput(f"{where}: related: expected a list of resource codes")
        out["related"] = [validate_code(r) for r in related]
    if "columns" in raw:
        out["columns"] = _columns(raw["columns"], where)
    return out


def _date(value: Any, where: str) -> str:
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value).isoformat()
        except ValueError:
            pass
    raise InvalidInput(f"{where}: expected a date YYYY-MM-DD, got {value!r}")


def _columns(value: Any, where: str) -> list[dict[str, str]]:
    if not isinstance(value, list):
        raise InvalidInput(f"{where}: columns: expected an array of tables ([[columns]])")
    out: list[dict[str, str]] = []
    seen: set[str] = set()
    for i, item in enumerate(value):
        here = f"{where}: columns[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidInput(f"{here}: each column needs a name")
        extra = set(item) - {"name", "type", "description"}
        if extra:
            raise InvalidInput(f"{here}: unknown field(s): {', '.join(sorted(extra))}")
        ctype = item.get("type", "string")
        if ctype not in COLUMN_TYPES:
            raise InvalidInput(
                f"{here}: type: invalid value {ctype!r}", hint=f"use one of {', '.join(COLUMN_TYPES)}"
            )
        desc = item.get("description", "")
        if not isinstance(desc, str):
            raise InvalidInput(f"{here}: description: expected a string")
        if item["name"] in seen:
            raise InvalidInput(f"{here}: column {item['name']!r} is declared twice")
        seen.add(item["name"])
        out.append({"name": item["name"], "type": ctype, "description": desc})
    return out


def core_metadata(
    *, code: str, name: str, share: str, fmt: str, meta: dict[str, Any], provider: str
) -> dict[str, Any]:
    """The full core-metadata record, with defaults for anything ``meta`` leaves out."""
    return {
        "classification": meta.get("classification", ""),
        "name": name,
        "code": code,
        "provider": meta.get("provider", provider),
        "provider_code": meta.get("provider_code", ""),
        "summary": meta.get("summary", ""),
        "format": meta.get("format") or fmt,
        "share": share,
        "share_condition": meta.get("share_condition", ""),
        "open": meta.get("open", "none"),
        "update_cycle": meta.get("update_cycle", "irregular"),
        "publish_date": meta.get("publish_date", dt.date.today().isoformat()),
        "related": meta.get("related", []),
    }
