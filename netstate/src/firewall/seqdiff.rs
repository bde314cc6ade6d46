//! The edits that turn one ordered list of rules into another, for diff lines a person can
//! follow: a rule inserted at the top is one added rule, not every later rule "changed", and
//! a rule edited in place is one change with its old and new text.
//!
//! Longest common subsequence after trimming the common head and tail; runs of removals and
//! additions between kept rules pair up into changes. The table is quadratic, so a middle
//! larger than [`LIMIT`] cells (two chains of 2,000 rules each, all different) is compared
//! position by position instead.

/// One edit, by index into the saved list (`a`) and the live one (`b`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Edit {
    /// a[i] became b[j]
    Change(usize, usize),
    /// a[i] is only saved
    Delete(usize),
    /// b[j] is only live
    Insert(usize),
}

const LIMIT: usize = 4_000_000;

pub(crate) fn edits<T: PartialEq>(a: &[T], b: &[T]) -> Vec<Edit> {
    let pre = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let max_suf = a.len().min(b.len()) - pre;
    let suf = a
        .iter()
        .rev()
        .zip(b.iter().rev())
        .take(max_suf)
        .take_while(|(x, y)| x == y)
        .count();
    let (ma, mb) = (&a[pre..a.len() - suf], &b[pre..b.len() - suf]);
    let (n, m) = (ma.len(), mb.len());
    // (in a, in b) per step: both = kept, only a = deleted, only b = inserted
    let mut steps: Vec<(Option<usize>, Option<usize>)> = Vec::new();
    if n.saturating_mul(m) > LIMIT {
        for k in 0..n.max(m) {
            steps.push(((k < n).then_some(k), (k < m).then_some(k)));
        }
    } else {
        // lcs[i][j]: common subsequence length of ma[i..] and mb[j..]
        let w = m + 1;
        let mut lcs = vec![0u32; (n + 1) * w];
        for i in (0..n).rev() {
            for j in (0..m).rev() {
                lcs[i * w + j] = if ma[i] == mb[j] {
                    lcs[(i + 1) * w + j + 1] + 1
                } else {
                    lcs[(i + 1) * w + j].max(lcs[i * w + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < n || j < m {
            if i < n && j < m && ma[i] == mb[j] {
                steps.push((Some(i), Some(j)));
                i += 1;
                j += 1;
            } else if j == m || (i < n && lcs[(i + 1) * w + j] >= lcs[i * w + j + 1]) {
                steps.push((Some(i), None));
                i += 1;
            } else {
                steps.push((None, Some(j)));
                j += 1;
            }
        }
    }
    let mut out = Vec::new();
    let (mut dels, mut inss) = (Vec::new(), Vec::new());
    let flush = |dels: &mut Vec<usize>, inss: &mut Vec<usize>, out: &mut Vec<Edit>| {
        let paired = dels.len().min(inss.len());
        for k in 0..paired {
            out.push(Edit::Change(dels[k] + pre, inss[k] + pre));
        }
        out.extend(dels[paired..].iter().map(|i| Edit::Delete(i + pre)));
        out.extend(inss[paired..].iter().map(|j| Edit::Insert(j + pre)));
        dels.clear();
        inss.clear();
    };
    for s in steps {
        match s {
            (Some(i), Some(j)) if ma[i] == mb[j] => flush(&mut dels, &mut inss, &mut out),
            (Some(i), Some(j)) => {
                dels.push(i);
                inss.push(j);
            }
            (Some(i), None) => dels.push(i),
            (None, Some(j)) => inss.push(j),
            (None, None) => {}
        }
    }
    flush(&mut dels, &mut inss, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use Edit::*;

    #[test]
    fn an_inserted_rule_is_one_insert() {
        assert_eq!(edits(&["a", "b", "c"], &["x", "a", "b", "c"]), [Insert(0)]);
        assert_eq!(edits(&["a", "b", "c"], &["a", "c"]), [Delete(1)]);
    }

    #[test]
    fn an_edited_rule_is_one_change() {
        assert_eq!(edits(&["a", "b", "c"], &["a", "B", "c"]), [Change(1, 1)]);
        assert_eq!(
            edits(&["a", "b", "c", "d"], &["a", "B", "C", "d", "e"]),
            [Change(1, 1), Change(2, 2), Insert(4)]
        );
    }

    #[test]
    fn moved_rules_and_empty_sides() {
        assert_eq!(edits(&["a", "b"], &["b", "a"]), [Delete(0), Insert(1)]);
        assert_eq!(edits::<&str>(&[], &["a"]), [Insert(0)]);
        assert_eq!(edits::<&str>(&["a"], &[]), [Delete(0)]);
        assert!(edits(&["a"], &["a"]).is_empty());
    }
}
