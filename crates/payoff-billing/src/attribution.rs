//! Holdout attribution: who is held out, and how much lift the AI proved.
//!
//! A contract with `attribution = { holdout = 0.10, confidence = 0.95, ... }`
//! bills only the increase the AI arm shows over a control arm that never saw
//! the AI. This module holds the statistics behind that sentence, and nothing
//! else: no I/O, no clock, no shared state, no randomness of its own.
//!
//! * [`assign`] puts a subject in an [`Arm`] by hashing, so any party holding
//!   the salt can re-derive every assignment from the evidence bundle alone.
//! * [`proportion_difference`] (unpooled Wald interval) and
//!   [`mean_difference`] (Welch's t interval) estimate the lift with a
//!   two-sided confidence interval; billing the lower bound bills only what
//!   the data prove at the contract's confidence.
//! * [`sample_ratio_p_value`] (Pearson chi-square goodness of fit) flags a
//!   broken split: if the arms are not the sizes the holdout share predicts,
//!   the assignment leaked and no interval computed from it can be trusted.
//!
//! The distribution functions ([`normal_quantile`], [`student_t_quantile`],
//! [`chi_square_sf`]) are implemented here rather than taken from a crate so
//! that the numbers printed on a statement depend on documented, pinned
//! algorithms only; `tests/attribution/reference.py` checks them against
//! scipy.

use serde::Serialize;
use sha2::{Digest, Sha256};

/// Which arm of a holdout experiment a subject is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Arm {
    /// Served by the AI; its outcomes are what the contract prices.
    Ai,
    /// Held out from the AI; its outcomes are the baseline the AI must beat.
    Control,
}

impl Arm {
    /// The name used in events, evidence and statements: `"ai"` or `"control"`.
    pub fn name(&self) -> &'static str {
        match self {
            Arm::Ai => "ai",
            Arm::Control => "control",
        }
    }

    /// Inverse of [`Arm::name`]; exact and case-sensitive, so a typo in
    /// recorded evidence is rejected instead of silently landing in an arm.
    pub fn parse(s: &str) -> Option<Arm> {
        match s {
            "ai" => Some(Arm::Ai),
            "control" => Some(Arm::Control),
            _ => None,
        }
    }
}

/// 2^64 as an `f64` (exact).
const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;

/// Stable assignment with no shared state: SHA-256 over salt bytes, a zero
/// byte, subject bytes; the first 8 bytes as a big-endian u64 divided by 2^64
/// gives u in [0,1); u < holdout => Control, else Ai.
///
/// Why hashing: the arm is a pure function of public inputs, so it needs no
/// assignment table, survives restarts and replicas, and an auditor can
/// recompute every subject's arm from the evidence. The zero byte keeps
/// `("ab", "c")` and `("a", "bc")` apart; a new salt re-randomises everything.
///
/// The comparison `u < holdout` is made exactly (as `x < holdout·2^64`, which
/// is exact in binary floating point), not on a rounded `x as f64 / 2^64`, so
/// implementations with exact arithmetic (e.g. Python's `int < float`) agree
/// on every subject, including ones within rounding of the boundary.
/// `holdout <= 0` (or NaN) puts everyone in Ai; `holdout >= 1` everyone in
/// Control.
pub fn assign(salt: &str, subject: &str, holdout: f64) -> Arm {
    let mut hasher = Sha256::new();
    hasher.update(salt.as_bytes());
    hasher.update([0u8]);
    hasher.update(subject.as_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let x = u64::from_be_bytes(first);

    if holdout.is_nan() || holdout <= 0.0 {
        return Arm::Ai;
    }
    if holdout >= 1.0 {
        return Arm::Control;
    }
    // Scaling by a power of two is exact, and 0 < threshold < 2^64.
    let threshold = holdout * TWO_POW_64;
    let floor = threshold.floor();
    let floor_int = floor as u64;
    let control = if threshold > floor {
        x <= floor_int
    } else {
        x < floor_int
    };
    if control {
        Arm::Control
    } else {
        Arm::Ai
    }
}

// ---------------------------------------------------------------------------
// Normal distribution
// ---------------------------------------------------------------------------

const SQRT_2: f64 = std::f64::consts::SQRT_2;
/// sqrt(2π)
const SQRT_2PI: f64 = 2.506_628_274_631_000_5;
/// 1/sqrt(π)
const FRAC_1_SQRT_PI: f64 = 0.564_189_583_547_756_3;
/// ln(2π)/2
const HALF_LN_2PI: f64 = 0.918_938_533_204_672_8;

// W. J. Cody, "Rational Chebyshev approximations for the error function",
// Math. Comp. 23 (1969); coefficients digit for digit as in netlib specfun
// CALERF, so they can be checked against the source by eye.
#[allow(clippy::excessive_precision)]
const CODY_A: [f64; 5] = [
    3.16112374387056560e00,
    1.13864154151050156e02,
    3.77485237685302021e02,
    3.20937758913846947e03,
    1.85777706184603153e-1,
];
#[allow(clippy::excessive_precision)]
const CODY_B: [f64; 4] = [
    2.36012909523441209e01,
    2.44024637934444173e02,
    1.28261652607737228e03,
    2.84423683343917062e03,
];
#[allow(clippy::excessive_precision)]
const CODY_C: [f64; 9] = [
    5.64188496988670089e-1,
    8.88314979438837594e00,
    6.61191906371416295e01,
    2.98635138197400131e02,
    8.81952221241769090e02,
    1.71204761263407058e03,
    2.05107837782607147e03,
    1.23033935479799725e03,
    2.15311535474403846e-8,
];
#[allow(clippy::excessive_precision)]
const CODY_D: [f64; 8] = [
    1.57449261107098347e01,
    1.17693950891312499e02,
    5.37181101862009858e02,
    1.62138957456669019e03,
    3.29079923573345963e03,
    4.36261909014324716e03,
    3.43936767414372164e03,
    1.23033935480374942e03,
];
#[allow(clippy::excessive_precision)]
const CODY_P: [f64; 6] = [
    3.05326634961232344e-1,
    3.60344899949804439e-1,
    1.25781726111229246e-1,
    1.60837851487422766e-2,
    6.58749161529837803e-4,
    1.63153871373020978e-2,
];
#[allow(clippy::excessive_precision)]
const CODY_Q: [f64; 5] = [
    2.56852019228982242e00,
    1.87295284992346047e00,
    5.27905102951428412e-1,
    6.05183413124413191e-2,
    2.33520497626869185e-3,
];
/// Cody's first interval: erf by a rational function of x² for |x| <= this.
const CODY_SMALL: f64 = 0.468_75;

/// erf(x) for |x| <= 0.46875 (Cody's first interval).
fn erf_small(x: f64) -> f64 {
    let z = x * x;
    let mut num = CODY_A[4] * z;
    let mut den = z;
    for i in 0..3 {
        num = (num + CODY_A[i]) * z;
        den = (den + CODY_B[i]) * z;
    }
    x * (num + CODY_A[3]) / (den + CODY_B[3])
}

/// Scaled complementary error function exp(y²)·erfc(y) for y > 0.46875
/// (Cody's second and third intervals, before the exp(-y²) factor).
fn erfcx_large(y: f64) -> f64 {
    if y <= 4.0 {
        let mut num = CODY_C[8] * y;
        let mut den = y;
        for i in 0..7 {
            num = (num + CODY_C[i]) * y;
            den = (den + CODY_D[i]) * y;
        }
        (num + CODY_C[7]) / (den + CODY_D[7])
    } else {
        let z = 1.0 / (y * y);
        let mut num = CODY_P[5] * z;
        let mut den = z;
        for i in 0..4 {
            num = (num + CODY_P[i]) * z;
            den = (den + CODY_Q[i]) * z;
        }
        let r = z * (num + CODY_P[4]) / (den + CODY_Q[4]);
        (FRAC_1_SQRT_PI - r) / y
    }
}

/// exp(-y²) with y² split as in CALERF, so the rounding of y·y does not cost
/// relative accuracy in the far tail.
fn exp_minus_sq(y: f64) -> f64 {
    let ysq = (y * 16.0).trunc() / 16.0;
    let del = (y - ysq) * (y + ysq);
    (-ysq * ysq).exp() * (-del).exp()
}

/// Complementary error function, full relative accuracy in both tails.
fn erfc(x: f64) -> f64 {
    let y = x.abs();
    if y <= CODY_SMALL {
        return 1.0 - erf_small(x);
    }
    let r = if y > 27.3 {
        0.0
    } else {
        erfcx_large(y) * exp_minus_sq(y)
    };
    if x < 0.0 {
        2.0 - r
    } else {
        r
    }
}

/// Error function.
fn erf(x: f64) -> f64 {
    if x.abs() <= CODY_SMALL {
        erf_small(x)
    } else if x > 0.0 {
        1.0 - erfc(x)
    } else {
        erfc(-x) - 1.0
    }
}

/// Standard normal CDF.
fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / SQRT_2)
}

// P. J. Acklam's rational approximation to the normal quantile (relative
// error below 1.15e-9), used as the starting point for Halley's method.
const ACKLAM_A: [f64; 6] = [
    -3.969_683_028_665_376e1,
    2.209_460_984_245_205e2,
    -2.759_285_104_469_687e2,
    1.383_577_518_672_69e2,
    -3.066_479_806_614_716e1,
    2.506_628_277_459_239,
];
const ACKLAM_B: [f64; 5] = [
    -5.447_609_879_822_406e1,
    1.615_858_368_580_409e2,
    -1.556_989_798_598_866e2,
    6.680_131_188_771_972e1,
    -1.328_068_155_288_572e1,
];
const ACKLAM_C: [f64; 6] = [
    -7.784_894_002_430_293e-3,
    -3.223_964_580_411_365e-1,
    -2.400_758_277_161_838,
    -2.549_732_539_343_734,
    4.374_664_141_464_968,
    2.938_163_982_698_783,
];
const ACKLAM_D: [f64; 4] = [
    7.784_695_709_041_462e-3,
    3.224_671_290_700_398e-1,
    2.445_134_137_142_996,
    3.754_408_661_907_416,
];

/// Inverse of the standard normal CDF, accurate to 1e-12 relative (Acklam's
/// rational approximation refined by Halley steps against a precise erfc,
/// W. J. Cody's rational Chebyshev approximations). Panics never: p outside
/// (0,1) gives NaN.
///
/// Why this construction: Acklam's approximation alone is good to about
/// 1e-9, which is visible in the last printed digits of a bound; one or two
/// Halley steps against Cody's erfc (itself accurate to a few ulps) bring it
/// to double precision. The upper half is computed as the mirror image of the
/// lower half (`1 - p` is exact there) and the residual near the median is
/// formed from `p - 0.5` (also exact), so relative accuracy holds in both
/// tails and next to zero.
pub fn normal_quantile(p: f64) -> f64 {
    if !(p > 0.0 && p < 1.0) {
        return f64::NAN;
    }
    if p > 0.5 {
        -lower_normal_quantile(1.0 - p)
    } else {
        lower_normal_quantile(p)
    }
}

/// Normal quantile for 0 < p <= 0.5 (result <= 0).
fn lower_normal_quantile(p: f64) -> f64 {
    const P_LOW: f64 = 0.024_25;
    let (a, b, c, d) = (&ACKLAM_A, &ACKLAM_B, &ACKLAM_C, &ACKLAM_D);
    let mut x = if p < P_LOW {
        let q = (-2.0 * p.ln()).sqrt();
        (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5])
            / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0)
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q
            / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1.0)
    };
    let centred = p - 0.5; // exact for p in [0.25, 0.5]
    for _ in 0..4 {
        // u = (Φ(x) - p) / φ(x), computed without cancellation or overflow.
        let t = -x / SQRT_2;
        let u = if t.abs() <= CODY_SMALL {
            let e = 0.5 * erf(x / SQRT_2) - centred;
            e * SQRT_2PI * (0.5 * x * x).exp()
        } else if t > 0.0 {
            let half_sq = 0.5 * x * x;
            let scaled_p = if half_sq < 700.0 {
                p * half_sq.exp()
            } else {
                (p.ln() + half_sq).exp()
            };
            SQRT_2PI * (0.5 * erfcx_large(t) - scaled_p)
        } else {
            // The start landed on the wrong side of zero; only possible for p
            // next to 0.5, where the plain residual is well conditioned.
            let e = normal_cdf(x) - p;
            e * SQRT_2PI * (0.5 * x * x).exp()
        };
        let step = u / (1.0 + 0.5 * x * u);
        x -= step;
        if step.is_nan() || step.abs() <= 1e-17 * x.abs() {
            break;
        }
    }
    x
}

// ---------------------------------------------------------------------------
// Gamma and beta functions
// ---------------------------------------------------------------------------

/// Stirling's series remainder δ(x) = ln Γ(x) - [(x - 1/2) ln x - x + ln √(2π)]
/// for x >= 10, where the terms used keep the truncation error below 1e-16.
fn stirling_delta(x: f64) -> f64 {
    let z2 = 1.0 / (x * x);
    (1.0 / 12.0
        - z2 * (1.0 / 360.0
            - z2 * (1.0 / 1260.0
                - z2 * (1.0 / 1680.0
                    - z2 * (1.0 / 1188.0 - z2 * (691.0 / 360_360.0 - z2 / 156.0))))))
        / x
}

/// ln Γ(x) for x > 0: Stirling's series after shifting the argument to >= 10.
fn ln_gamma(x: f64) -> f64 {
    let mut z = x;
    let mut prod = 1.0;
    while z < 10.0 {
        prod *= z;
        z += 1.0;
    }
    (z - 0.5) * z.ln() - z + HALF_LN_2PI + stirling_delta(z) - prod.ln()
}

/// ln B(a, b), arranged as in R's `lbeta` so that the large ln Γ terms cancel
/// analytically: with b = 1/2 and a = df/2 in the hundreds of thousands, the
/// naive ln Γ(a) + ln Γ(b) - ln Γ(a+b) would lose about seven digits.
fn ln_beta(a: f64, b: f64) -> f64 {
    let (p, q) = if a < b { (a, b) } else { (b, a) };
    let pq = p + q;
    if p >= 10.0 {
        let corr = stirling_delta(p) + stirling_delta(q) - stirling_delta(pq);
        -0.5 * q.ln() + HALF_LN_2PI + corr + (p - 0.5) * (p / pq).ln() + q * (-p / pq).ln_1p()
    } else if q >= 10.0 {
        let corr = stirling_delta(q) - stirling_delta(pq);
        ln_gamma(p) + corr + p - p * pq.ln() + (q - 0.5) * (-p / pq).ln_1p()
    } else {
        ln_gamma(p) + ln_gamma(q) - ln_gamma(pq)
    }
}

const EPS: f64 = f64::EPSILON;
const TINY: f64 = 1e-300;
const MAX_ITER: usize = 10_000;

/// Regularized incomplete beta I_x(a, b) by its continued fraction, evaluated
/// with the modified Lentz method. Converges quickly for x < (a+1)/(a+b+2);
/// callers use the symmetry I_x(a,b) = 1 - I_{1-x}(b,a) beyond that. The
/// logarithms of x and 1-x are passed in so callers can form them without
/// cancellation.
fn inc_beta_cf(a: f64, b: f64, x: f64, ln_x: f64, ln_1mx: f64, ln_beta_ab: f64) -> f64 {
    let front = (a * ln_x + b * ln_1mx - ln_beta_ab).exp() / a;
    if front == 0.0 {
        return 0.0;
    }
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..=MAX_ITER {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() <= EPS {
            break;
        }
    }
    front * h
}

/// Regularized upper incomplete gamma Q(a, x) = Γ(a, x)/Γ(a): power series
/// for P = 1 - Q when x < a + 1 (where Q is not small), Lentz continued
/// fraction for Q otherwise, so small p-values keep their relative accuracy.
fn gamma_q(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    if x.is_infinite() {
        return 0.0;
    }
    let ln_front = a * x.ln() - x - ln_gamma(a);
    if x < a + 1.0 {
        let mut ap = a;
        let mut term = 1.0 / a;
        let mut sum = term;
        for _ in 0..MAX_ITER {
            ap += 1.0;
            term *= x / ap;
            sum += term;
            if term.abs() < sum.abs() * EPS {
                break;
            }
        }
        1.0 - sum * ln_front.exp()
    } else {
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / TINY;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..=MAX_ITER {
            let i = i as f64;
            let an = -i * (i - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < TINY {
                d = TINY;
            }
            c = b + an / c;
            if c.abs() < TINY {
                c = TINY;
            }
            d = 1.0 / d;
            let del = d * c;
            h *= del;
            if (del - 1.0).abs() <= EPS {
                break;
            }
        }
        ln_front.exp() * h
    }
}

// ---------------------------------------------------------------------------
// Student's t
// ---------------------------------------------------------------------------

/// Lower tail of Student's t at t <= 0 for a fixed df:
/// F(t) = I_x(df/2, 1/2) / 2 with x = 1/(1+r²), r = |t|/sqrt(df).
struct TLower {
    df: f64,
    a: f64,
    ln_beta: f64,
    /// ln of the density's constant, 1/(sqrt(df)·B(df/2, 1/2)).
    ln_norm: f64,
}

impl TLower {
    fn new(df: f64) -> TLower {
        let a = 0.5 * df;
        let ln_beta = ln_beta(a, 0.5);
        TLower {
            df,
            a,
            ln_beta,
            ln_norm: -0.5 * df.ln() - ln_beta,
        }
    }

    /// Evaluates the lower tail at (or next to) `t <= 0`, for p < 1/2.
    /// Returns the point t' actually used, the residual F(t') - p and the
    /// density f(t').
    ///
    /// t' differs from t only where the continued fraction in x is used with
    /// x >= 1/2: there x is rounded first and t' is the point whose x is
    /// exactly that double (so 1 - x is exact too). At large df that
    /// continued fraction would otherwise amplify the rounding of x about
    /// df/2 times. Newton corrections from an exactly evaluated t' then keep
    /// full resolution; the shift t' - t is below 1e-12 relative wherever
    /// this path is taken (x below the switch point means 1 - x >= 1.5/(a+2.5)).
    fn eval(&self, t: f64, p: f64) -> (f64, f64, f64) {
        let threshold = (self.a + 1.0) / (self.a + 2.5);
        let r = t.abs() / self.df.sqrt();
        let (t, x, y, ln_x, ln_y) = if r > 1.0 {
            // x < 1/2 carries full relative precision, and so does y.
            // Logarithms, because r² (or r itself, at tiny df) can overflow.
            let ln_r = t.abs().ln() - 0.5 * self.df.ln();
            let s = (-2.0 * ln_r).exp();
            let ln_1pr2 = 2.0 * ln_r + s.ln_1p();
            (t, s / (1.0 + s), 1.0 / (1.0 + s), -ln_1pr2, -s.ln_1p())
        } else {
            let r2 = r * r;
            let x = 1.0 / (1.0 + r2);
            if x < threshold {
                let y = 1.0 - x; // exact, since x is in [1/2, 1]
                let t = -(self.df * y / x).sqrt();
                (t, x, y, (-y).ln_1p(), y.ln())
            } else {
                // Near the centre only y = r²/(1+r²) is used, and it is exact
                // to rounding as computed here.
                let ln_1pr2 = r2.ln_1p();
                (t, x, r2 / (1.0 + r2), -ln_1pr2, 2.0 * r.ln() - ln_1pr2)
            }
        };
        let a = self.a;
        let residual = if x < threshold {
            0.5 * inc_beta_cf(a, 0.5, x, ln_x, ln_y, self.ln_beta) - p
        } else {
            // F = 1/2 - I_y(1/2, a)/2; subtract the exact 1/2 - p first.
            (0.5 - p) - 0.5 * inc_beta_cf(0.5, a, y, ln_y, ln_x, self.ln_beta)
        };
        let density = (self.ln_norm + 0.5 * (self.df + 1.0) * ln_x).exp();
        (t, residual, density)
    }
}

/// Points evaluated while inverting: the bracket F(lo) <= p <= F(hi), and
/// the point with the smallest residual.
struct Search {
    lo: f64,
    hi: f64,
    best: Option<(f64, f64, f64)>,
}

impl Search {
    fn take(&mut self, point: (f64, f64, f64)) {
        let (t, e, _) = point;
        if e <= 0.0 {
            self.lo = self.lo.max(t);
        }
        if e >= 0.0 {
            self.hi = self.hi.min(t);
        }
        if self.best.is_none_or(|(_, be, _)| e.abs() < be.abs()) {
            self.best = Some(point);
        }
    }
}

/// Quantile of Student's t with (possibly fractional) df > 0, via the
/// regularized incomplete beta function (continued fraction, Lentz) and a
/// bracketed Newton/bisection inversion, accurate to 1e-10.
///
/// Why: Welch's degrees of freedom are fractional, which rules out table
/// look-ups and the integer-df closed forms. Newton on the CDF converges
/// quadratically; the bracket (with bisection on a log scale when it spans
/// orders of magnitude) makes heavy tails at small df safe. For df >= 10^4
/// (and not in the extreme tail, z² <= df/100) the Cornish–Fisher expansion
/// to fourth order is used instead: there it is exact to double precision
/// and the continued fraction is not. Out-of-domain
/// input (p outside (0,1), df <= 0 or NaN) gives NaN; infinite df gives the
/// normal quantile.
pub fn student_t_quantile(p: f64, df: f64) -> f64 {
    let in_domain = p > 0.0 && p < 1.0 && df > 0.0;
    if !in_domain {
        return f64::NAN;
    }
    if df.is_infinite() {
        return normal_quantile(p);
    }
    if p == 0.5 {
        return 0.0;
    }
    if p > 0.5 {
        -lower_t_quantile(1.0 - p, df)
    } else {
        lower_t_quantile(p, df)
    }
}

/// From this df on, where also z² <= df/100, the Cornish–Fisher expansion
/// through df^-4 is exact to about 1e-13 (checked against scipy), while the
/// continued fraction's rounding grows like df·ε (about 1e-10 at df = 10^6)
/// and it needs more than sqrt(df/2) terms.
const T_ASYMPTOTIC_DF: f64 = 1e4;

/// t quantile for 0 < p < 0.5 (result < 0).
fn lower_t_quantile(p: f64, df: f64) -> f64 {
    // Cornish–Fisher expansion of t in the normal quantile z (Abramowitz &
    // Stegun 26.7.5): the answer for huge df, a starting point otherwise.
    let z = normal_quantile(p);
    let z2 = z * z;
    let g1 = z * (z2 + 1.0) / 4.0;
    let g2 = z * ((5.0 * z2 + 16.0) * z2 + 3.0) / 96.0;
    let g3 = z * (((3.0 * z2 + 19.0) * z2 + 17.0) * z2 - 15.0) / 384.0;
    let g4 = z * ((((79.0 * z2 + 776.0) * z2 + 1482.0) * z2 - 1920.0) * z2 - 945.0) / 92160.0;
    let cornish_fisher = z + (g1 + (g2 + (g3 + g4 / df) / df) / df) / df;
    if df >= T_ASYMPTOTIC_DF && z2 <= 0.01 * df {
        return cornish_fisher;
    }

    let dist = TLower::new(df);
    let mut search = Search {
        lo: f64::NEG_INFINITY,
        hi: 0.0, // F(0) = 1/2 > p
        best: None,
    };
    // Second guess for small df, far in the tail: F(t) ~ f(t)·|t|/df.
    let ln_abs_tail = (dist.ln_norm + 0.5 * (df - 1.0) * df.ln() - p.ln()) / df;
    let tail = -ln_abs_tail.exp();
    for guess in [cornish_fisher, tail] {
        if guess.is_finite() && guess < 0.0 {
            search.take(dist.eval(guess, p));
        }
    }
    if search.best.is_none() {
        search.take(dist.eval(-1.0, p));
    }
    // Find a finite lower end if neither guess gave one.
    let mut probe = search.hi.min(-1.0);
    while search.lo == f64::NEG_INFINITY {
        probe *= 2.0;
        if !probe.is_finite() {
            return f64::NEG_INFINITY; // beyond the range of f64
        }
        search.take(dist.eval(probe, p));
    }

    let (mut t, mut e, mut dens) = search.best.expect("evaluated at least once");
    for _ in 0..2_000 {
        if e == 0.0 {
            return t;
        }
        let correction = e / dens;
        let newton = t - correction;
        let newton_ok =
            dens > 0.0 && newton.is_finite() && newton > search.lo && newton < search.hi;
        // From an exactly evaluated point, a Newton step this small is exact
        // to second order (error ~ correction² · |f'/f|).
        if newton_ok && correction.abs() <= 1e-10 * t.abs() {
            return newton;
        }
        if search.hi - search.lo <= 4.0 * EPS * search.lo.abs() {
            return t;
        }
        let next = if newton_ok {
            newton
        } else if search.hi < 0.0 && search.lo / search.hi > 4.0 {
            // The bracket spans magnitudes: bisect on a log scale (the
            // product lo·hi could overflow).
            -((-search.lo).sqrt() * (-search.hi).sqrt())
        } else {
            0.5 * (search.lo + search.hi)
        };
        let point = dist.eval(next, p);
        search.take(point);
        if point.0 == t {
            // The step is below the spacing of representable x: done.
            return if newton_ok { newton } else { t };
        }
        (t, e, dens) = point;
    }
    t
}

// ---------------------------------------------------------------------------
// Chi-square
// ---------------------------------------------------------------------------

/// Upper tail P(X >= x) of chi-square with df degrees of freedom (regularized
/// upper incomplete gamma).
///
/// Why the upper tail directly: the p-values that matter are the tiny ones,
/// and `1 - cdf` would round them to zero; Q(df/2, x/2) is computed by a
/// continued fraction that keeps relative accuracy far into the tail.
/// x <= 0 gives 1; NaN x or df <= 0 gives NaN.
pub fn chi_square_sf(x: f64, df: f64) -> f64 {
    if x.is_nan() || df.is_nan() || df <= 0.0 {
        return f64::NAN;
    }
    gamma_q(0.5 * df, 0.5 * x)
}

// ---------------------------------------------------------------------------
// Intervals
// ---------------------------------------------------------------------------

/// A point estimate with a two-sided confidence interval `[low, high]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    /// The estimate itself (AI arm minus control arm).
    pub estimate: f64,
    /// Lower confidence bound: the lift the data prove at the confidence.
    pub low: f64,
    /// Upper confidence bound.
    pub high: f64,
}

/// Difference of proportions p_ai - p_control with the unpooled normal
/// (Wald) two-sided interval at `confidence` (e.g. 0.95):
/// se = sqrt(pa(1-pa)/na + pc(1-pc)/nc),
/// z = normal_quantile(1 - (1-confidence)/2). Returns None when an arm has
/// no subjects.
///
/// Why unpooled Wald: the question is "how large is the lift", not "is there
/// any lift", so each arm keeps its own variance rather than the pooled
/// variance of a test of equality; with the thousands of subjects a billing
/// experiment has, its coverage is at the nominal level (see the coverage
/// test). At a rate of exactly 0 or 1 in both arms the interval collapses to
/// the estimate. Also None when an arm reports more outcomes than subjects,
/// which no valid evidence can produce. A `confidence` outside (0,1) gives
/// NaN bounds.
pub fn proportion_difference(
    ai_outcomes: u64,
    ai_subjects: u64,
    control_outcomes: u64,
    control_subjects: u64,
    confidence: f64,
) -> Option<Interval> {
    if ai_subjects == 0
        || control_subjects == 0
        || ai_outcomes > ai_subjects
        || control_outcomes > control_subjects
    {
        return None;
    }
    let (na, nc) = (ai_subjects as f64, control_subjects as f64);
    let pa = ai_outcomes as f64 / na;
    let pc = control_outcomes as f64 / nc;
    let se = (pa * (1.0 - pa) / na + pc * (1.0 - pc) / nc).sqrt();
    let z = normal_quantile(1.0 - (1.0 - confidence) / 2.0);
    let estimate = pa - pc;
    Some(Interval {
        estimate,
        low: estimate - z * se,
        high: estimate + z * se,
    })
}

/// Mean and sample variance (n - 1 denominator), two-pass.
fn mean_and_variance(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let (sum_sq, sum_dev) = values.iter().fold((0.0, 0.0), |(sq, dev), v| {
        let d = v - mean;
        (sq + d * d, dev + d)
    });
    // The second term corrects the rounding of `mean` (Chan, Golub & LeVeque).
    let var = (sum_sq - sum_dev * sum_dev / n) / (n - 1.0);
    (mean, var.max(0.0))
}

/// Difference of means (ai - control) with Welch's t interval:
/// se = sqrt(va/na + vc/nc) with sample variances (n-1), Welch–Satterthwaite
/// df, t = student_t_quantile(1-(1-confidence)/2, df). Returns (interval,
/// df); None when an arm has fewer than 2 values. If both variances are 0,
/// the interval collapses to the estimate (df = na+nc-2).
///
/// Why Welch: the AI typically changes the spread of a metric (order values,
/// handling times) as well as its level, and the arms are deliberately
/// unequal in size, which is exactly when Student's pooled-variance interval
/// is wrong; Welch's interval stays valid without assuming equal variances.
/// The fractional Welch–Satterthwaite df is returned so it can be printed.
pub fn mean_difference(ai: &[f64], control: &[f64], confidence: f64) -> Option<(Interval, f64)> {
    if ai.len() < 2 || control.len() < 2 {
        return None;
    }
    let (na, nc) = (ai.len() as f64, control.len() as f64);
    let (ma, va) = mean_and_variance(ai);
    let (mc, vc) = mean_and_variance(control);
    let estimate = ma - mc;
    let (sa, sc) = (va / na, vc / nc);
    let se2 = sa + sc;
    if se2 == 0.0 {
        let interval = Interval {
            estimate,
            low: estimate,
            high: estimate,
        };
        return Some((interval, na + nc - 2.0));
    }
    let df = se2 * se2 / (sa * sa / (na - 1.0) + sc * sc / (nc - 1.0));
    let t = student_t_quantile(1.0 - (1.0 - confidence) / 2.0, df);
    let half = t * se2.sqrt();
    let interval = Interval {
        estimate,
        low: estimate - half,
        high: estimate + half,
    };
    Some((interval, df))
}

/// Sample-ratio-mismatch p-value: chi-square goodness of fit (1 df) of the
/// observed arm sizes against the configured holdout share (control expected
/// = n*holdout, ai expected = n*(1-holdout)). 1.0 when n == 0.
///
/// Why: hashing makes the split exact in expectation, so a control arm much
/// larger or smaller than the share says (p below, say, 0.001) means subjects
/// were dropped or re-routed after assignment, and the lift estimate is
/// biased in an unknown direction. Pearson's statistic with one degree of
/// freedom is the standard SRM check. A holdout of exactly 0 or 1 with any
/// subject in the impossible arm gives 0; a holdout outside [0,1] gives NaN.
pub fn sample_ratio_p_value(ai_subjects: u64, control_subjects: u64, holdout: f64) -> f64 {
    if ai_subjects == 0 && control_subjects == 0 {
        return 1.0;
    }
    if !(0.0..=1.0).contains(&holdout) {
        return f64::NAN;
    }
    let n = ai_subjects as f64 + control_subjects as f64;
    let term = |observed: u64, expected: f64| -> f64 {
        let observed = observed as f64;
        if expected == 0.0 {
            if observed == 0.0 {
                0.0
            } else {
                f64::INFINITY
            }
        } else {
            (observed - expected) * (observed - expected) / expected
        }
    };
    let statistic = term(ai_subjects, n * (1.0 - holdout)) + term(control_subjects, n * holdout);
    chi_square_sf(statistic, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// Agreement with the scipy fixtures. Quantiles, interval bounds and
    /// degrees of freedom: |got - want| <= 1e-9 * max(1, |want|), i.e.
    /// absolute below magnitude 1 (where the values sit next to zero) and
    /// relative above it. Probabilities (chi-square tail, SRM p-value): also
    /// relative 1e-9 however small, because tiny p-values are the ones that
    /// trigger decisions.
    const TOL: f64 = 1e-9;

    fn close(got: f64, want: f64) -> bool {
        (got - want).abs() <= TOL * want.abs().max(1.0)
    }

    fn close_probability(got: f64, want: f64) -> bool {
        (got - want).abs() <= TOL * want.abs() || (want == 0.0 && got == 0.0)
    }

    fn num(v: &Value, key: &str) -> f64 {
        v[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} is not a number in {v}"))
    }

    fn count(v: &Value, key: &str) -> u64 {
        v[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key} is not a count in {v}"))
    }

    fn floats(v: &Value, key: &str) -> Vec<f64> {
        v[key]
            .as_array()
            .unwrap_or_else(|| panic!("{key} is not an array in {v}"))
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    }

    #[derive(Default)]
    struct Report {
        failures: Vec<String>,
        /// Worst |got - want| / max(1, |want|) seen, for headroom.
        worst: f64,
    }

    impl Report {
        fn check(&mut self, what: String, got: f64, want: f64, ok: bool) {
            self.worst = self.worst.max((got - want).abs() / want.abs().max(1.0));
            if !ok {
                self.fail(format!("{what}: got {got:e}, want {want:e}"));
            }
        }

        fn fail(&mut self, message: String) {
            self.failures.push(message);
        }
    }

    #[test]
    fn agrees_with_scipy_reference() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/attribution/reference.json"
        );
        let text = std::fs::read_to_string(path).expect("read reference.json");
        let cases: Vec<Value> = serde_json::from_str(&text).expect("parse reference.json");
        assert!(cases.len() > 100, "too few reference cases");
        let mut report = Report::default();
        for case in &cases {
            let function = case["function"].as_str().unwrap();
            let args = &case["args"];
            let expected = &case["expected"];
            let label = format!("{function}({args})");
            match function {
                "normal_quantile" => {
                    let (got, want) = (normal_quantile(num(args, "p")), expected.as_f64().unwrap());
                    report.check(label, got, want, close(got, want));
                }
                "student_t_quantile" => {
                    let got = student_t_quantile(num(args, "p"), num(args, "df"));
                    let want = expected.as_f64().unwrap();
                    report.check(label, got, want, close(got, want));
                }
                "chi_square_sf" => {
                    let got = chi_square_sf(num(args, "x"), num(args, "df"));
                    let want = expected.as_f64().unwrap();
                    report.check(label, got, want, close_probability(got, want));
                }
                "sample_ratio_p_value" => {
                    let got = sample_ratio_p_value(
                        count(args, "ai_subjects"),
                        count(args, "control_subjects"),
                        num(args, "holdout"),
                    );
                    let want = expected.as_f64().unwrap();
                    report.check(label, got, want, close_probability(got, want));
                }
                "proportion_difference" => {
                    let got = proportion_difference(
                        count(args, "ai_outcomes"),
                        count(args, "ai_subjects"),
                        count(args, "control_outcomes"),
                        count(args, "control_subjects"),
                        num(args, "confidence"),
                    );
                    match (got, expected.is_null()) {
                        (None, true) => {}
                        (Some(i), false) => {
                            for (name, g) in
                                [("estimate", i.estimate), ("low", i.low), ("high", i.high)]
                            {
                                let w = num(expected, name);
                                report.check(format!("{label}.{name}"), g, w, close(g, w));
                            }
                        }
                        (got, _) => report.fail(format!("{label}: got {got:?}, want {expected}")),
                    }
                }
                "mean_difference" => {
                    let got = mean_difference(
                        &floats(args, "ai"),
                        &floats(args, "control"),
                        num(args, "confidence"),
                    );
                    match (got, expected.is_null()) {
                        (None, true) => {}
                        (Some((i, df)), false) => {
                            for (name, g) in [
                                ("estimate", i.estimate),
                                ("low", i.low),
                                ("high", i.high),
                                ("df", df),
                            ] {
                                let w = num(expected, name);
                                report.check(format!("{label}.{name}"), g, w, close(g, w));
                            }
                        }
                        (got, _) => report.fail(format!("{label}: got {got:?}, want {expected}")),
                    }
                }
                "assign" => {
                    let got = assign(
                        args["salt"].as_str().unwrap(),
                        args["subject"].as_str().unwrap(),
                        num(args, "holdout"),
                    );
                    let want = Arm::parse(expected.as_str().unwrap()).expect("arm name");
                    if got != want {
                        report.fail(format!("{label}: got {got:?}, want {want:?}"));
                    }
                }
                other => panic!("unknown function {other} in reference.json"),
            }
        }
        let Report { failures, worst } = report;
        assert!(
            failures.is_empty(),
            "{} mismatches:\n{}",
            failures.len(),
            failures.join("\n")
        );
        // Headroom, printed with --nocapture: the worst scaled deviation seen.
        println!("worst scaled deviation from scipy: {worst:e}");
    }

    #[test]
    fn assignment_is_stable_and_matches_the_share() {
        // Pinned by hand with hashlib (also in reference.json).
        assert_eq!(assign("checkout-2024", "cust_0001", 0.10), Arm::Ai);
        assert_eq!(assign("checkout-2024", "cust_0019", 0.10), Arm::Control);
        assert_eq!(assign("checkout-2024", "cust_0020", 0.10), Arm::Control);
        assert_eq!(assign("", "", 0.5), Arm::Control);
        assert_eq!(assign("s", "x", 0.0), Arm::Ai);
        assert_eq!(assign("s", "x", 1.0), Arm::Control);
        assert_eq!(assign("s", "x", f64::NAN), Arm::Ai);
        // Same inputs, same arm, every time.
        for i in 0..100 {
            let subject = format!("cust_{i:04}");
            let first = assign("checkout-2024", &subject, 0.10);
            assert_eq!(first, assign("checkout-2024", &subject, 0.10));
        }

        let n = 100_000;
        let holdout = 0.10;
        let control = (0..n)
            .filter(|i| assign("share-check", &format!("subject-{i}"), holdout) == Arm::Control)
            .count();
        let share = control as f64 / n as f64;
        println!("control share over {n} subjects: {share}");
        let se = (holdout * (1.0 - holdout) / n as f64).sqrt();
        assert!(
            (share - holdout).abs() <= 4.0 * se,
            "control share {share} is more than 4 standard errors ({se}) from {holdout}"
        );
    }

    #[test]
    fn arm_names_round_trip() {
        for arm in [Arm::Ai, Arm::Control] {
            assert_eq!(Arm::parse(arm.name()), Some(arm));
            assert_eq!(
                serde_json::to_string(&arm).unwrap(),
                format!("\"{}\"", arm.name())
            );
        }
        assert_eq!(Arm::parse("AI"), None);
        assert_eq!(Arm::parse(""), None);
    }

    /// xorshift64* (Vigna): small, seeded, good enough for Bernoulli draws.
    struct XorShift(u64);

    impl XorShift {
        fn next_u64(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        /// Uniform in [0, 1) from the top 53 bits.
        fn uniform(&mut self) -> f64 {
            (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
        }

        fn binomial(&mut self, n: u64, p: f64) -> u64 {
            (0..n).filter(|_| self.uniform() < p).count() as u64
        }
    }

    #[test]
    fn wald_interval_has_nominal_coverage() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let (p_ai, p_control, subjects) = (0.30, 0.25, 2_000);
        let truth = p_ai - p_control;
        let experiments = 2_000;
        let (mut covered, mut low_above) = (0, 0);
        for _ in 0..experiments {
            let a = rng.binomial(subjects, p_ai);
            let c = rng.binomial(subjects, p_control);
            let i = proportion_difference(a, subjects, c, subjects, 0.95).unwrap();
            if i.low <= truth && truth <= i.high {
                covered += 1;
            }
            if i.low > truth {
                low_above += 1;
            }
        }
        let coverage = covered as f64 / experiments as f64;
        let over = low_above as f64 / experiments as f64;
        println!("Wald 95% coverage {coverage}, lower bound above truth {over}");
        assert!(
            (0.93..=0.97).contains(&coverage),
            "95% interval covered the truth {coverage} of the time"
        );
        // Billing the lower bound over-bills only when it exceeds the truth:
        // nominally 2.5%, plus 4 standard errors of sampling slack.
        let slack = 4.0 * (0.025 * 0.975 / experiments as f64).sqrt();
        assert!(
            over <= 0.025 + slack,
            "lower bound exceeded the true lift {over} of the time"
        );
    }

    #[test]
    fn sample_ratio_mismatch_is_flagged() {
        assert!(sample_ratio_p_value(5_000, 5_000, 0.10) < 0.001);
        assert!(sample_ratio_p_value(9_000, 1_000, 0.10) > 0.05);
        assert_eq!(sample_ratio_p_value(0, 0, 0.10), 1.0);
        assert_eq!(sample_ratio_p_value(10, 1, 0.0), 0.0);
        assert_eq!(sample_ratio_p_value(10, 0, 0.0), 1.0);
        assert!(sample_ratio_p_value(10, 1, 1.5).is_nan());
    }

    #[test]
    fn closed_forms_and_edges() {
        // df = 1 (Cauchy) and df = 2 have closed-form quantiles.
        for k in 1..200 {
            let p = k as f64 / 200.0;
            let cauchy = (std::f64::consts::PI * (p - 0.5)).tan();
            let got = student_t_quantile(p, 1.0);
            assert!(
                (got - cauchy).abs() <= 1e-12 * cauchy.abs().max(1.0),
                "df=1 p={p}: {got} vs {cauchy}"
            );
            let two = (2.0 * p - 1.0) / (2.0 * p * (1.0 - p)).sqrt();
            let got = student_t_quantile(p, 2.0);
            assert!(
                (got - two).abs() <= 1e-12 * two.abs().max(1.0),
                "df=2 p={p}: {got} vs {two}"
            );
            // The normal quantile inverts the CDF it was refined against.
            let x = normal_quantile(p);
            assert!((normal_cdf(x) - p).abs() <= 4.0 * f64::EPSILON * p.max(0.5));
        }
        // df = 2: the chi-square tail is exp(-x/2).
        for x in [0.1, 1.0, 5.0, 40.0, 300.0] {
            let want = (-x / 2.0_f64).exp();
            assert!((chi_square_sf(x, 2.0) - want).abs() <= 1e-13 * want);
        }
        assert_eq!(normal_quantile(0.5), 0.0);
        assert!(normal_quantile(0.0).is_nan());
        assert!(normal_quantile(1.0).is_nan());
        assert!(normal_quantile(f64::NAN).is_nan());
        assert!(normal_quantile(f64::MIN_POSITIVE).is_finite());
        assert!(student_t_quantile(0.975, 0.0).is_nan());
        assert!(student_t_quantile(1.5, 3.0).is_nan());
        // Beyond f64 range the quantile saturates to -inf rather than NaN.
        assert!(!student_t_quantile(1e-300, 0.05).is_nan());
        assert_eq!(
            student_t_quantile(0.975, f64::INFINITY),
            normal_quantile(0.975)
        );
        assert_eq!(chi_square_sf(0.0, 1.0), 1.0);
        assert_eq!(chi_square_sf(f64::INFINITY, 1.0), 0.0);
        assert!(chi_square_sf(1.0, 0.0).is_nan());
    }

    #[test]
    fn interval_edge_cases() {
        assert_eq!(proportion_difference(0, 0, 1, 10, 0.95), None);
        assert_eq!(proportion_difference(11, 10, 1, 10, 0.95), None);
        let i = proportion_difference(0, 10, 0, 10, 0.95).unwrap();
        assert_eq!((i.estimate, i.low, i.high), (0.0, 0.0, 0.0));

        assert_eq!(mean_difference(&[1.0], &[1.0, 2.0], 0.95), None);
        let (i, df) = mean_difference(&[3.0, 3.0, 3.0], &[1.0, 1.0], 0.95).unwrap();
        assert_eq!((i.estimate, i.low, i.high, df), (2.0, 2.0, 2.0, 3.0));
        // One constant arm: Welch df is the other arm's n - 1.
        let (i, df) = mean_difference(&[3.0, 3.0, 3.0], &[1.0, 2.0, 3.0, 4.0], 0.95).unwrap();
        assert!((df - 3.0).abs() < 1e-12);
        assert!(i.low < i.estimate && i.estimate < i.high);
    }
}
