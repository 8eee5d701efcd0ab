//! Small dense Cholesky solves on fixed-size, stack-allocated arrays: the
//! normal equations have at most [`MAXP`] (+4) unknowns and are solved at
//! every point of the width searches.

use super::MAXP;

/// Cholesky factor (lower triangle) of the symmetric n×n matrix whose upper
/// triangle is given; None if not positive definite.
pub(super) fn cholesky<const M: usize>(a: &[[f64; M]; M], n: usize) -> Option<[[f64; M]; M]> {
    let mut l = [[0.0; M]; M];
    for j in 0..n {
        let d = a[j][j] - l[j][..j].iter().map(|v| v * v).sum::<f64>();
        // Relative pivot test: a column that is (numerically) a combination
        // of the others means a parameter the data cannot constrain.
        if d.is_nan() || d <= a[j][j] * 1e-12 {
            return None;
        }
        let d = d.sqrt();
        l[j][j] = d;
        for i in j + 1..n {
            let s = a[j][i] - l[i][..j].iter().zip(&l[j][..j]).map(|(x, y)| x * y).sum::<f64>();
            l[i][j] = s / d;
        }
    }
    Some(l)
}

pub(super) fn cho_solve<const M: usize>(l: &[[f64; M]; M], b: &[f64; M], n: usize) -> [f64; M] {
    let mut y = [0.0; M];
    for i in 0..n {
        let s = b[i] - l[i][..i].iter().zip(&y[..i]).map(|(a, b)| a * b).sum::<f64>();
        y[i] = s / l[i][i];
    }
    let mut x = [0.0; M];
    for i in (0..n).rev() {
        let s = y[i] - (i + 1..n).map(|k| l[k][i] * x[k]).sum::<f64>();
        x[i] = s / l[i][i];
    }
    x
}

/// The first `np` columns of the inverse of the n×n matrix with Cholesky
/// factor `l`.
pub(super) fn cho_inverse_block<const M: usize>(l: &[[f64; M]; M], n: usize, np: usize) -> [[f64; MAXP]; MAXP] {
    let mut cov = [[0.0; MAXP]; MAXP];
    for j in 0..np {
        let mut e = [0.0; M];
        e[j] = 1.0;
        let col = cho_solve(l, &e, n);
        for k in 0..np {
            cov[k][j] = col[k];
        }
    }
    cov
}
