//! Ranking quality of anomaly scores against known labels.

/// Area under the ROC curve of `scores` (higher = more anomalous) for the
/// `labels` (true = anomaly): the probability that a random anomaly outscores a
/// random normal object, ties counting one half — the same number as
/// scikit-learn's `roc_auc_score`. `None` when either class is absent.
///
/// # Panics
/// If the slices differ in length.
pub fn auroc(scores: &[f32], labels: &[bool]) -> Option<f64> {
    assert_eq!(scores.len(), labels.len(), "auroc: one label per score");
    let positives = labels.iter().filter(|&&l| l).count();
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let mut order: Vec<u32> = (0..scores.len() as u32).collect();
    order.sort_unstable_by(|&a, &b| scores[a as usize].total_cmp(&scores[b as usize]));
    // Mann–Whitney U: the positives' rank sum, tied scores sharing their mean rank.
    let mut rank_sum = 0.0f64;
    let mut start = 0;
    while start < order.len() {
        let value = scores[order[start] as usize];
        let end = start + order[start..].iter().take_while(|&&i| scores[i as usize].total_cmp(&value).is_eq()).count();
        let mean_rank = (start + end + 1) as f64 / 2.0; // ranks start..end are 1-based start+1..=end
        let tied_positives = order[start..end].iter().filter(|&&i| labels[i as usize]).count();
        rank_sum += mean_rank * tied_positives as f64;
        start = end;
    }
    let (p, n) = (positives as f64, negatives as f64);
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

/// Average precision (area under the precision–recall curve, scikit-learn's
/// `average_precision_score`): Σ (R_k − R_{k−1}) P_k over the distinct score
/// thresholds, tied scores entering together. `None` without positives.
pub fn auprc(scores: &[f32], labels: &[bool]) -> Option<f64> {
    assert_eq!(scores.len(), labels.len(), "auprc: one label per score");
    let positives = labels.iter().filter(|&&l| l).count();
    if positives == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut seen, mut ap, mut last_recall) = (0usize, 0usize, 0.0f64, 0.0f64);
    let mut i = 0;
    while i < order.len() {
        let value = scores[order[i]];
        while i < order.len() && scores[order[i]].total_cmp(&value).is_eq() {
            tp += usize::from(labels[order[i]]);
            seen += 1;
            i += 1;
        }
        let recall = tp as f64 / positives as f64;
        ap += (recall - last_recall) * (tp as f64 / seen as f64);
        last_recall = recall;
    }
    Some(ap)
}

#[cfg(test)]
mod tests {
    use super::auroc;

    #[test]
    fn auroc_known_values() {
        assert_eq!(auroc(&[0.1, 0.2, 0.8, 0.9], &[false, false, true, true]), Some(1.0));
        assert_eq!(auroc(&[0.9, 0.8, 0.2, 0.1], &[false, false, true, true]), Some(0.0));
        // sklearn.metrics.roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
        assert_eq!(auroc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]), Some(0.75));
        // All tied: chance.
        assert_eq!(auroc(&[0.5; 6], &[true, false, true, false, false, false]), Some(0.5));
        // roc_auc_score([0, 1, 0, 1, 0], [0.2, 0.5, 0.5, 0.9, 0.1]) == 0.9166…
        let a = auroc(&[0.2, 0.5, 0.5, 0.9, 0.1], &[false, true, false, true, false]).unwrap();
        assert!((a - 11.0 / 12.0).abs() < 1e-12);
        assert_eq!(auroc(&[0.1, 0.2], &[true, true]), None);
    }
}
