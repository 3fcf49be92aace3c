"""Verdict sentences, chosen only by intervals and tests (mmn_core.stats), never by fixed thresholds on means.

One function per kind of claim; the evidence report, the CLI and the MNAR lab page all call these, so a
sentence cannot say more than its interval allows:
- the 95 % interval of the paired difference excludes 0 → a direction ("MultiModN more robust ...");
- TOST passes at the stated margin → "equivalent within ±margin" (checked first: a tiny but consistent
  difference inside the margin is equivalence, with its direction mentioned);
- otherwise → "no detectable difference" (with the interval, so a reader sees how wide it is);
- fewer than two paired folds → "undetermined".
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from .fmt import MISSING, number
from .stats import PairedTest, paired_test, tost

KINDS = ("higher", "lower", "equivalent", "no-difference", "undetermined")


@dataclass(frozen=True)
class Verdict:
    kind: str             # one of KINDS
    text: str             # the sentence (no trailing period)
    difference: float     # mean paired difference a − b
    low: float            # 95 % interval
    high: float
    p: float              # paired test p-value (NaN when undetermined)
    equivalence_p: float  # TOST p-value (NaN without a margin)
    margin: float | None
    n: int                # paired folds used

    def to_json(self) -> dict:
        return asdict(self)


def signed3(v) -> str:
    """'+0.120' / '−0.050' (true minus), three decimals so that a sentence's numbers line up."""
    if v is None or not math.isfinite(float(v)):
        return MISSING
    return ("−" if float(v) < 0 else "+") + number(abs(float(v)), 3)


def _ci(low: float, high: float, level: float = 0.95) -> str:
    return f"{100 * level:.0f}% CI {signed3(low)} to {signed3(high)}"


def difference_verdict(a, b, test_train_ratio: float | None, higher: str, lower: str,
                       margin: float | None = None) -> Verdict:
    """Verdict on mean(a − b) over paired folds. `higher` / `lower`: the phrase when a is credibly above / below
    b; `margin`: equivalence margin for TOST (None: no equivalence claim is possible)."""
    test: PairedTest = paired_test(a, b, test_train_ratio)
    iv = test.interval
    eq = tost(a, b, margin, test_train_ratio) if margin else None
    eq_p = eq.p if eq is not None else math.nan
    common = dict(difference=iv.mean, low=iv.low, high=iv.high, p=test.p, equivalence_p=eq_p, margin=margin,
                  n=iv.n)
    diff = f"difference {signed3(iv.mean)}"
    if iv.n < 2 or math.isnan(iv.low):
        return Verdict("undetermined", f"undetermined ({diff} from {iv.n} paired fold(s) gives no interval, so "
                       "it does not show a difference either way)", **common)
    ci = _ci(iv.low, iv.high)
    if eq is not None and eq.equivalent:
        side = ""
        if iv.low > 0 or iv.high < 0:
            side = f"; {higher if iv.low > 0 else lower}, by less than the margin ({ci})"
        return Verdict("equivalent", f"equivalent within ±{number(margin, 3)} ({diff}, "
                       f"{_ci(eq.interval.low, eq.interval.high, eq.interval.level)}, TOST p = {_p(eq.p)}{side})",
                       **common)
    if iv.low > 0:
        return Verdict("higher", f"{higher} ({diff}, {ci})", **common)
    if iv.high < 0:
        return Verdict("lower", f"{lower} ({diff}, {ci})", **common)
    tail = f"; not shown equivalent within ±{number(margin, 3)}" if margin else ""
    return Verdict("no-difference", f"no detectable difference ({diff}, {ci}{tail})", **common)


def _p(p: float) -> str:
    if p is None or not math.isfinite(p):
        return MISSING
    return "< 0.001" if p < 0.001 else number(p, 3)


# --- the claims of the evidence report ---------------------------------------------------------------------
def robustness(a, b, test_train_ratio: float | None, margin: float | None = 0.02, a_name: str = "MultiModN",
               b_name: str = "P-Fusion") -> Verdict:
    """Shifted-test AUROC of two models trained on the same folds (a − b)."""
    return difference_verdict(a, b, test_train_ratio, f"{a_name} more robust", f"{a_name} less robust", margin)


def parity(a, b, test_train_ratio: float | None, margin: float = 0.02, a_name: str = "MultiModN") -> Verdict:
    """Clean AUROC of two models on the same folds: equivalent within the parity margin, or which is higher."""
    return difference_verdict(a, b, test_train_ratio, f"{a_name} higher", f"{a_name} lower", margin)


def against_reference(a, ref, test_train_ratio: float | None, reference: str, margin: float | None = 0.02
                      ) -> Verdict:
    """A result against a reference measured on the same folds (e.g. the model trained on the reversed
    distribution, or the without-M floor)."""
    return difference_verdict(a, ref, test_train_ratio, f"above {reference}", f"below {reference}", margin)


def effect(after, before, test_train_ratio: float | None, gain: str, loss: str, margin: float | None = None
           ) -> Verdict:
    """A change on the same folds (after − before), e.g. a mitigation's clean cost or a factor's effect."""
    return difference_verdict(after, before, test_train_ratio, gain, loss, margin)


# --- the MNAR lab's summary --------------------------------------------------------------------------------
def mnar_paired(result: dict, rate: float, model: str, test: str, key: str = "auroc") -> dict[tuple, float]:
    """{(seed, fold): value} of one run_mnar cell from its per-fold rows."""
    return {(r.get("seed", 0), r["fold"]): r[key] for r in result.get("per_fold", [])
            if abs(r["rate"] - rate) < 1e-9 and r["model"] == model and r["test"] == test}


def mnar_robustness(result: dict, rate: float | None = None, margin: float | None = 0.02) -> Verdict | None:
    """MultiModN vs P-Fusion on the reversed test at `rate` (default: the largest), paired by fold; None when
    the result lacks one of the two models or per-fold rows."""
    rates = result.get("rates") or []
    if not rates:
        return None
    rate = max(rates) if rate is None else rate
    a = mnar_paired(result, rate, "multimodn", "reversed")
    b = mnar_paired(result, rate, "pfusion", "reversed")
    keys = sorted(set(a) & set(b))
    if not keys:
        return None
    ratio = result.get("config", {}).get("test_train_ratio")
    return robustness([a[k] for k in keys], [b[k] for k in keys], ratio, margin)


def factor_summary(effects: dict[str, Verdict], quantity: str = "reversed AUROC") -> str:
    """One sentence on which factors, changed alone from a baseline configuration, move `quantity`:
    `effects` maps a factor's name to its verdict (changed − baseline, paired by fold)."""
    if not effects:
        return f"No factor was measured for {quantity}."
    groups = {k: [n for n, v in effects.items() if v.kind == k] for k in KINDS}
    parts = []
    if groups["lower"]:
        parts.append(f"lowers {quantity}: " + ", ".join(groups["lower"]))
    if groups["higher"]:
        parts.append(f"raises {quantity}: " + ", ".join(groups["higher"]))
    flat = groups["equivalent"] + groups["no-difference"]
    if flat:
        parts.append("no detectable change: " + ", ".join(flat))
    if groups["undetermined"]:
        parts.append("undetermined (too few folds): " + ", ".join(groups["undetermined"]))
    return "Changed alone from the baseline, " + "; ".join(parts)


# --- the MNAR lab's wording: it follows the number of folds and the removal protocol -----------------------------
def spread_phrase(n_folds: int) -> str:
    """What the error bars of an MNAR chart are, for `n_folds` train/test splits per point."""
    if n_folds < 2:
        return ("No error bars: this is one train/test split, so no fold-to-fold variation can be measured "
                "(choose 2 or more folds to see it)")
    return f"Error bars: ± one standard deviation over the {n_folds} folds"


def mnar_protocol(modality: str, rule: str | None) -> dict[str, str]:
    """Phrases of the MNAR lab for the random protocol (rule None: removal among records with the outcome) or a
    rule on an observed value (`rule`: its description): "train" (how the data went missing in training),
    "reversed" (the reversed test set), "when" (start of the result sentence, with {pct} for the rate)."""
    if rule is None:
        return {"train": f"{modality} was removed at random from a share of the training records with the "
                         "outcome",
                "reversed": "the pattern is reversed (the data is missing for people *without* the outcome)",
                "when": f"When {modality} is missing for {{pct}} of the training records with the outcome and the "
                        "pattern is reversed at test time, "}
    return {"train": f"{modality} was kept, in a share of the training records, only where the rule holds "
                     f"({rule})",
            "reversed": "the rule is reversed (the data is kept only where the rule does *not* hold)",
            "when": f"When the rule decides whether {modality} is kept for {{pct}} of the training records and "
                    "the rule is reversed at test time, "}
