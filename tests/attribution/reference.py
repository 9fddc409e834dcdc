#!/usr/bin/env python3
"""Reference values for crates/payoff-billing/src/attribution.rs.

Run from anywhere:  python3 tests/attribution/reference.py
Writes tests/attribution/reference.json next to this script: a list of cases,
each {"function": name, "args": {...}, "expected": value-or-null}. Floats are
written with repr(), i.e. the shortest string that round-trips exactly.

scipy is the oracle for every distribution function; the interval cases use
scipy's quantiles plus the textbook formulas (Wald for proportions, Welch for
means; the latter via ttest_ind(...).confidence_interval when available).
Arm assignments are computed with hashlib exactly as documented in Rust.
"""
import hashlib
import json
import math
import os

import numpy as np
import scipy
from scipy import stats

cases = []


def case(function, expected, **args):
    cases.append({"function": function, "args": args, "expected": expected})


# --- normal quantile ---------------------------------------------------------
for p in [1e-300, 1e-100, 1e-20, 1e-10, 1e-6, 0.001, 0.01, 0.02425, 0.025, 0.1,
          0.3, 0.49, 0.4999999, 0.5, 0.6, 0.9, 0.95, 0.975, 0.99, 0.999,
          0.999999, 1 - 1e-12]:
    case("normal_quantile", float(stats.norm.ppf(p)), p=p)

# --- Student's t quantile ----------------------------------------------------
for df in [1.0, 2.5, 7.3, 30.0, 1000.0]:
    for p in [1e-10, 0.0005, 0.025, 0.05, 0.3, 0.5, 0.7, 0.95, 0.975, 0.995, 0.9999]:
        case("student_t_quantile", float(stats.t.ppf(p, df)), p=p, df=df)
# Large df: Rust switches to the Cornish-Fisher expansion there, except in the
# extreme tail (z^2 > df/100), which the last case reaches.
for df, p in [(2e4, 0.025), (2e4, 0.9995), (1e6, 0.05), (1e6, 0.975), (1e6, 1e-10), (2e4, 1e-60)]:
    case("student_t_quantile", float(stats.t.ppf(p, df)), p=p, df=df)

# --- chi-square survival function --------------------------------------------
for df in [1.0, 3.0]:
    for x in [0.0, 1e-6, 0.01, 0.5, 1.0, 2.0, 3.841458820694124, 7.8, 10.0, 25.0, 60.0, 200.0]:
        case("chi_square_sf", float(stats.chi2.sf(x, df)), x=x, df=df)

# --- difference of proportions (unpooled Wald) ---------------------------------
def wald(ao, an, co, cn, conf):
    if an == 0 or cn == 0:
        return None
    pa, pc = ao / an, co / cn
    se = math.sqrt(pa * (1 - pa) / an + pc * (1 - pc) / cn)
    z = float(stats.norm.ppf(1 - (1 - conf) / 2))
    d = pa - pc
    return {"estimate": d, "low": d - z * se, "high": d + z * se}


for (ao, an, co, cn) in [(300, 1000, 250, 1000), (45, 900, 3, 100), (1234, 5000, 1100, 5000),
                         (0, 50, 0, 50), (50, 50, 10, 40), (7, 13, 2, 11),
                         (123456, 900000, 11000, 100000)]:
    for conf in [0.90, 0.95, 0.99]:
        case("proportion_difference", wald(ao, an, co, cn, conf),
             ai_outcomes=ao, ai_subjects=an, control_outcomes=co, control_subjects=cn,
             confidence=conf)
case("proportion_difference", None, ai_outcomes=0, ai_subjects=0, control_outcomes=1,
     control_subjects=10, confidence=0.95)
case("proportion_difference", None, ai_outcomes=1, ai_subjects=10, control_outcomes=0,
     control_subjects=0, confidence=0.95)

# --- difference of means (Welch) ----------------------------------------------
def welch(a, c, conf):
    a, c = np.asarray(a), np.asarray(c)
    res = stats.ttest_ind(a, c, equal_var=False)
    if hasattr(res, "confidence_interval"):
        ci = res.confidence_interval(confidence_level=conf)
        low, high, df = float(ci.low), float(ci.high), float(res.df)
    else:  # scipy < 1.10
        va, vc = a.var(ddof=1) / len(a), c.var(ddof=1) / len(c)
        df = (va + vc) ** 2 / (va ** 2 / (len(a) - 1) + vc ** 2 / (len(c) - 1))
        half = float(stats.t.ppf(1 - (1 - conf) / 2, df)) * math.sqrt(va + vc)
        d = a.mean() - c.mean()
        low, high = float(d - half), float(d + half)
    return {"estimate": float(a.mean() - c.mean()), "low": low, "high": high, "df": df}


rng = np.random.default_rng(20240611)
samples = [
    (rng.normal(12.0, 3.0, 40), rng.normal(10.5, 5.0, 25)),
    (rng.exponential(80.0, 300), rng.exponential(70.0, 60)),
    (rng.normal(0.4, 0.05, 3), rng.normal(0.1, 0.9, 5)),
]
for a, c in samples:
    a = [float(v) for v in a]
    c = [float(v) for v in c]
    for conf in [0.90, 0.95, 0.99]:
        case("mean_difference", welch(a, c, conf), ai=a, control=c, confidence=conf)
case("mean_difference", None, ai=[1.0], control=[1.0, 2.0], confidence=0.95)

# --- sample-ratio mismatch -----------------------------------------------------
for (na, nc, h) in [(9000, 1000, 0.10), (9100, 900, 0.10), (8850, 1150, 0.10),
                    (5000, 5000, 0.10), (4890, 5110, 0.5), (95, 5, 0.05),
                    (1, 0, 0.10), (180000, 20500, 0.10)]:
    n = na + nc
    p = float(stats.chisquare([na, nc], f_exp=[n * (1 - h), n * h]).pvalue)
    case("sample_ratio_p_value", p, ai_subjects=na, control_subjects=nc, holdout=h)
case("sample_ratio_p_value", 1.0, ai_subjects=0, control_subjects=0, holdout=0.10)

# --- stable assignment -----------------------------------------------------------
def assign(salt, subject, holdout):
    digest = hashlib.sha256(salt.encode() + b"\x00" + subject.encode()).digest()
    x = int.from_bytes(digest[:8], "big")
    # Python compares int with float exactly, i.e. x / 2**64 < holdout over the reals.
    return "control" if x < holdout * 2.0 ** 64 else "ai"


for salt, subject, holdout in [("checkout-2024", "cust_0001", 0.10),
                               ("checkout-2024", "cust_0002", 0.10),
                               ("checkout-2024", "cust_0003", 0.10),
                               ("checkout-2024", "user@example.com", 0.5),
                               ("support-bot", "ticket-77", 0.5),
                               ("support-bot", "ticket-78", 0.5),
                               ("support-bot", "ticket-79", 0.5),
                               ("", "", 0.5),
                               ("s", "x", 0.0),
                               ("s", "x", 1.0)]:
    case("assign", assign(salt, subject, holdout), salt=salt, subject=subject, holdout=holdout)
# Subjects that land in control at 10%, found by scanning, so the fixture pins both arms.
found = 0
for i in range(1000):
    subject = f"cust_{i:04d}"
    if assign("checkout-2024", subject, 0.10) == "control":
        case("assign", "control", salt="checkout-2024", subject=subject, holdout=0.10)
        found += 1
        if found == 3:
            break

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference.json")
# One case per line: a stable, reviewable diff when scipy or the cases change.
with open(out, "w") as f:
    f.write("[\n" + ",\n".join(json.dumps(c) for c in cases) + "\n]\n")
print(f"wrote {len(cases)} cases to {out} (scipy {scipy.__version__})")
