#!/usr/bin/env python3
"""Deterministic synthetic data for the demo: a tax bureau's residents and a bank's applicants.

    python scripts/gen_data.py OUTDIR [--seed 20240601] [--tax-rows 200000]
                                      [--bank-rows 50000] [--overlap 0.6]

Writes, in OUTDIR:

* ``tax_residents.csv``: resident_id (18-digit resident ID with a valid
  GB 11643-1999 check digit), district, annual_income, tax_paid,
  social_insurance_months;
* ``bank_applicants.csv``: applicant_id (resident ID), age, loan_amount,
  credit_inquiries, default (0/1);
* ``tax_residents.toml`` and ``bank_applicants.toml``: directory metadata for
  ``pcnode dataset register ... --meta``.

About ``overlap`` (60%) of the applicants are residents in the tax data; the
rest are people the tax bureau does not hold. Each applicant's default label
is drawn from a logistic model of their (true) income, tax paid and
social-insurance months, plus the bank's own features. The bank sees only
its features, so the tax features add genuine, learnable signal: a model on
bank + tax features beats one on bank features alone over the overlap.

Everything is vectorised numpy; the same seed gives byte-identical files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

#: Reference date for ages.
REF_YEAR, REF_MONTH, REF_DAY = 2024, 12, 31

#: Chengdu districts and their six-digit administrative area codes (GB/T 2260).
DISTRICTS = [
    ("锦江区", 510104), ("青羊区", 510105), ("金牛区", 510106), ("武侯区", 510107),
    ("成华区", 510108), ("龙泉驿区", 510112), ("青白江区", 510113), ("新都区", 510114),
    ("温江区", 510115), ("双流区", 510116), ("郫都区", 510117), ("新津区", 510118),
]
#: Relative population weights and income multipliers per district.
DISTRICT_WEIGHTS = np.array([9, 10, 12, 13, 10, 8, 5, 9, 6, 8, 7, 3], dtype=np.float64)
DISTRICT_INCOME = np.array([1.25, 1.2, 1.0, 1.3, 1.05, 0.9, 0.8, 0.9, 0.95, 1.1, 0.9, 0.8])

#: GB 11643 weights and check characters.
ID_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
ID_CHECK = np.frombuffer(b"10X98765432", dtype=np.uint8)

#: Annual IIT brackets on taxable income (after the 60,000 basic deduction).
BRACKETS = [(36_000, 0.03, 0), (144_000, 0.10, 2_520), (300_000, 0.20, 16_920),
            (420_000, 0.25, 31_920), (660_000, 0.30, 52_920), (960_000, 0.35, 85_920),
            (np.inf, 0.45, 181_920)]


def resident_ids(area: np.ndarray, birth: np.ndarray, seq: np.ndarray) -> np.ndarray:
    """18-character resident IDs (numpy ``S18``) from area codes, birth dates and sequences."""
    days = birth.astype("datetime64[D]")
    y = days.astype("datetime64[Y]").astype(np.int64) + 1970
    m = days.astype("datetime64[M]").astype(np.int64) % 12 + 1
    d = (days - days.astype("datetime64[M]")).astype(np.int64) + 1
    body = (area.astype(np.int64) * 10**11 + y * 10**7 + m * 10**5 + d * 10**3 + seq)
    digits = (body[:, None] // 10 ** np.arange(16, -1, -1, dtype=np.int64)) % 10
    check = ID_CHECK[(digits @ ID_WEIGHTS) % 11]
    out = np.empty((len(body), 18), dtype=np.uint8)
    out[:, :17] = digits + 48
    out[:, 17] = check
    return out.view("S18").ravel()


def _people(rng: np.random.Generator, n: int, min_age: int, max_age: int
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n distinct people: (resident IDs, district index, age in years)."""
    ref = np.datetime64(f"{REF_YEAR}-{REF_MONTH:02d}-{REF_DAY:02d}")
    want = int(n * 1.05) + 64
    district = rng.choice(len(DISTRICTS), size=want, p=DISTRICT_WEIGHTS / DISTRICT_WEIGHTS.sum())
    age_days = rng.integers(min_age * 365 + 1, max_age * 365, size=want)
    birth = ref - age_days.astype("timedelta64[D]")
    seq = rng.integers(0, 1000, size=want)
    area = np.array([c for _, c in DISTRICTS])[district]
    ids = resident_ids(area, birth, seq)
    _, first = np.unique(ids, return_index=True)
    keep = np.sort(first)[:n]
    if len(keep) < n:  # pragma: no cover - 5% headroom is plenty
        raise RuntimeError("too many ID collisions; raise the headroom")
    age = (age_days[keep] // 365).astype(np.int64)
    return ids[keep], district[keep], age


def _income(rng: np.random.Generator, district: np.ndarray, age: np.ndarray) -> np.ndarray:
    """Annual income (yuan): log-normal, rising to mid-career, scaled by district."""
    career = 1.0 - ((age - 45) / 30.0) ** 2 * 0.5
    base = rng.lognormal(mean=np.log(85_000), sigma=0.55, size=len(age))
    return np.round(base * career * DISTRICT_INCOME[district], -2)


def income_tax(income: np.ndarray) -> np.ndarray:
    """Annual individual income tax with the 60,000 basic deduction (rounded to yuan)."""
    taxable = np.maximum(income - 60_000, 0)
    tax = np.zeros_like(taxable)
    lower = 0.0
    for upper, rate, quick in BRACKETS:
        band = (taxable > lower) & (taxable <= upper)
        tax[band] = taxable[band] * rate - quick
        lower = upper
    return np.round(tax, 0)


def _social_months(rng: np.random.Generator, age: np.ndarray, income: np.ndarray) -> np.ndarray:
    """Months of social-insurance contributions: up to working years, more for formal work."""
    years = np.clip(age - 20, 0, 40)
    formal = 1 / (1 + np.exp(-(np.log(income) - np.log(60_000)) * 2.0))
    frac = np.clip(rng.beta(2 + 6 * formal, 2 + 3 * (1 - formal)), 0, 1)
    return np.minimum(np.round(years * 12 * frac), 480).astype(np.int64)


def _z(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / (x.std() + 1e-12)


def generate(seed: int = 20240601, tax_rows: int = 200_000, bank_rows: int = 50_000,
             overlap: float = 0.6) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Build both tables as dicts of numpy columns (same seed, same data)."""
    if not 0 <= overlap <= 1:
        raise ValueError("overlap must be within 0..1")
    n_in = min(round(bank_rows * overlap), tax_rows)
    n_out = bank_rows - n_in
    rng = np.random.default_rng(seed)

    # The population: tax residents, plus people the tax bureau does not hold.
    ids, district, age = _people(rng, tax_rows + 2 * n_out + 16, 18, 80)
    tax_ids, tax_district, tax_age = ids[:tax_rows], district[:tax_rows], age[:tax_rows]
    income = _income(rng, tax_district, tax_age)
    tax = {
        "resident_id": tax_ids,
        "district": np.array([n for n, _ in DISTRICTS], dtype=object)[tax_district],
        "annual_income": income,
        "tax_paid": income_tax(income),
        "social_insurance_months": _social_months(rng, tax_age, income),
    }

    # Applicants: n_in drawn from the residents aged 20-65, n_out from outsiders.
    eligible = np.flatnonzero((tax_age >= 20) & (tax_age <= 65))
    chosen_in = rng.choice(eligible, size=n_in, replace=False)
    out_pool = np.arange(tax_rows, len(ids))
    out_pool = out_pool[(age[out_pool] >= 20) & (age[out_pool] <= 65)]
    chosen_out = rng.choice(out_pool, size=n_out, replace=False)
    a_ids = np.concatenate([ids[chosen_in], ids[chosen_out]])
    a_age = np.concatenate([tax_age[chosen_in], age[chosen_out]])
    out_income = _income(rng, district[chosen_out], age[chosen_out])
    a_income = np.concatenate([income[chosen_in], out_income])
    a_tax = np.concatenate([tax["tax_paid"][chosen_in], income_tax(out_income)])
    a_months = np.concatenate([tax["social_insurance_months"][chosen_in],
                               _social_months(rng, age[chosen_out], out_income)])

    # Bank features: loan size loosely follows income; inquiries are noisy.
    loan = np.round(a_income * rng.lognormal(np.log(1.6), 0.5, size=bank_rows), -3)
    loan = np.clip(loan, 10_000, 3_000_000)
    inquiries = rng.poisson(1.2, size=bank_rows)

    # Default: logistic in true income, tax paid, social-insurance months and bank features.
    tenure = a_months / np.maximum((a_age - 20) * 12, 12)
    logit = (-1.75
             - 0.75 * _z(np.log(a_income))
             - 0.45 * _z(np.log1p(a_tax))
             - 0.65 * _z(tenure)
             + 0.85 * _z(np.log(loan / a_income))
             + 0.40 * _z(inquiries.astype(np.float64))
             - 0.20 * _z(a_age.astype(np.float64)))
    default = (rng.random(bank_rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)

    order = rng.permutation(bank_rows)
    bank = {
        "applicant_id": a_ids[order],
        "age": a_age[order],
        "loan_amount": loan[order],
        "credit_inquiries": inquiries[order],
        "default": default[order],
    }
    return tax, bank


def _fmt(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "S":
        return values.astype(str)
    if values.dtype.kind == "f":
        return np.char.mod("%.0f", values) if np.all(values == np.round(values)) else \
            np.char.mod("%.2f", values)
    if values.dtype.kind in "iu":
        return values.astype(str)
    return values.astype(str)


def write_csv(path: Path, table: dict[str, np.ndarray]) -> None:
    """Write a dict of equal-length columns as UTF-8 CSV with a header."""
    cols = [_fmt(np.asarray(v)) for v in table.values()]
    lines = cols[0].astype(object)
    for c in cols[1:]:
        lines = lines + "," + c.astype(object)
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        fh.write(",".join(table) + "\n")
        fh.write("\n".join(lines.tolist()))
        fh.write("\n")


TAX_META = """\
# Directory core metadata (seeds/002 §2.2.1 item 6) for `pcnode dataset register --meta`.
classification = "社会保障/税收"
name = "居民纳税与社保缴纳信息"
provider = "成都市税务局 (示例)"
provider_code = "TAX-510100"
summary = "Residents' annual income, income tax paid and social-insurance months (synthetic)."
open = "none"
update_cycle = "yearly"
publish_date = 2024-06-01
related = []
share_condition = "Joint computation only; results, not records."

[[columns]]
name = "resident_id"
type = "resident_id"
description = "18-digit resident ID (GB 11643)"

[[columns]]
name = "district"
type = "string"
description = "District of residence"

[[columns]]
name = "annual_income"
type = "float"
description = "Annual income, yuan"

[[columns]]
name = "tax_paid"
type = "float"
description = "Individual income tax paid, yuan"

[[columns]]
name = "social_insurance_months"
type = "integer"
description = "Months of social-insurance contributions"
"""

BANK_META = """\
classification = "金融/信贷"
name = "贷款申请人"
provider = "示例银行"
provider_code = "BANK-0001"
summary = "Loan applicants with a default label (synthetic)."
open = "none"
update_cycle = "monthly"
publish_date = 2024-06-01

[[columns]]
name = "applicant_id"
type = "resident_id"
description = "18-digit resident ID (GB 11643)"

[[columns]]
name = "age"
type = "integer"
description = "Age in years"

[[columns]]
name = "loan_amount"
type = "float"
description = "Requested loan amount, yuan"

[[columns]]
name = "credit_inquiries"
type = "integer"
description = "Credit inquiries in the last 6 months"

[[columns]]
name = "default"
type = "integer"
description = "1 if the loan defaulted within 12 months"
"""


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--tax-rows", type=int, default=200_000)
    ap.add_argument("--bank-rows", type=int, default=50_000)
    ap.add_argument("--overlap", type=float, default=0.6)
    args = ap.parse_args(argv)
    args.outdir.mkdir(parents=True, exist_ok=True)
    tax, bank = generate(args.seed, args.tax_rows, args.bank_rows, args.overlap)
    write_csv(args.outdir / "tax_residents.csv", tax)
    write_csv(args.outdir / "bank_applicants.csv", bank)
    (args.outdir / "tax_residents.toml").write_text(TAX_META, encoding="utf-8")
    (args.outdir / "bank_applicants.toml").write_text(BANK_META, encoding="utf-8")
    print(f"wrote {len(tax['resident_id'])} residents and {len(bank['applicant_id'])} applicants "
          f"to {args.outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
