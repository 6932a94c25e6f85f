//! Candidate selection: a pure function, candidates in, a choice out.
//!
//! The rules, as the Go router defines them and as users rely on:
//! - a candidate's score is `usage × weight`; the lowest score wins;
//! - weight 0 means "always use": every weight-0 candidate beats every
//!   weighted one, and among them the lowest usage wins;
//! - ties go to config order (the group's model order, then key order).
//!
//! On top of that, passive health: a candidate that is cooling down is
//! skipped, unless *every* remaining candidate is, in which case the one whose
//! cooldown ends first is tried so that traffic never stops completely.
//! One pass, no allocation: linear in the number of candidates.

/// What selection needs to know about one candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    pub weight: u64,
    /// Tokens used (plus in-flight reservations) by this key on this model.
    pub usage: u64,
    /// Monotonic milliseconds at which the candidate may be used again;
    /// 0 or anything `<= now` means it is usable now.
    pub ready_at: u64,
}

impl View {
    /// Lower is better; weight-0 candidates form their own, better tier.
    fn rank(&self) -> (bool, u128) {
        if self.weight == 0 {
            (false, u128::from(self.usage))
        } else {
            (true, u128::from(self.usage) * u128::from(self.weight))
        }
    }
}

/// Picks the best candidate not in `tried`, by index into `views`.
pub fn pick(views: impl IntoIterator<Item = View>, tried: &[usize], now: u64) -> Option<usize> {
    let mut best_ready: Option<(usize, (bool, u128))> = None;
    let mut soonest_cooling: Option<(usize, u64)> = None;
    for (i, view) in views.into_iter().enumerate() {
        if tried.contains(&i) {
            continue;
        }
        if view.ready_at <= now {
            let rank = view.rank();
            if best_ready.is_none_or(|(_, best)| rank < best) {
                best_ready = Some((i, rank));
            }
        } else if soonest_cooling.is_none_or(|(_, at)| view.ready_at < at) {
            soonest_cooling = Some((i, view.ready_at));
        }
    }
    best_ready
        .map(|(i, _)| i)
        .or(soonest_cooling.map(|(i, _)| i))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(weight: u64, usage: u64) -> View {
        View {
            weight,
            usage,
            ready_at: 0,
        }
    }

    /// Candidates in config order: for each model, each key. `usage[m][k]`.
    fn grid(weights: &[u64], usage: &[&[u64]]) -> Vec<View> {
        weights
            .iter()
            .zip(usage)
            .flat_map(|(&w, keys)| keys.iter().map(move |&u| v(w, u)))
            .collect()
    }

    #[test]
    fn lowest_weighted_usage_wins() {
        assert_eq!(pick([v(1, 100), v(1, 50)], &[], 0), Some(1));
        assert_eq!(pick([v(1, 100), v(3, 50)], &[], 0), Some(0));
    }

    #[test]
    fn ties_go_to_config_order() {
        assert_eq!(pick([v(1, 0), v(1, 0), v(1, 0)], &[], 0), Some(0));
        assert_eq!(pick([v(1, 100), v(2, 50)], &[], 0), Some(0));
    }

    #[test]
    fn weight_zero_is_always_preferred() {
        assert_eq!(pick([v(1, 0), v(0, 1_000_000)], &[], 0), Some(1));
        assert_eq!(pick([v(0, 30), v(5, 0), v(0, 20)], &[], 0), Some(2));
    }

    #[test]
    fn tried_candidates_are_skipped() {
        assert_eq!(pick([v(1, 0), v(1, 10), v(1, 20)], &[0], 0), Some(1));
        assert_eq!(pick([v(1, 0), v(1, 10)], &[0, 1], 0), None);
        assert_eq!(pick(Vec::<View>::new(), &[], 0), None);
    }

    #[test]
    fn cooling_candidates_are_skipped_while_others_are_ready() {
        let cooling = View {
            weight: 1,
            usage: 0,
            ready_at: 500,
        };
        assert_eq!(pick([cooling, v(1, 1_000)], &[], 100), Some(1));
        // Once its cooldown has passed it competes normally again.
        assert_eq!(pick([cooling, v(1, 1_000)], &[], 500), Some(0));
    }

    #[test]
    fn when_all_are_cooling_the_soonest_ready_is_tried() {
        let c = |ready_at| View {
            weight: 1,
            usage: 0,
            ready_at,
        };
        assert_eq!(pick([c(900), c(300), c(600)], &[], 100), Some(1));
        assert_eq!(pick([c(900), c(300), c(600)], &[1], 100), Some(2));
    }

    // The Go router's own cases (app/app_test.go), ported: keys kc1..kc3 on
    // one provider, models in group order.

    #[test]
    fn go_multiple_models_from_same_provider() {
        // gpt-4-turbo-preview (w1): kc1=0, kc2=0; gpt-4 (w1): kc1=1000, kc2=2000
        let views = grid(&[1, 1], &[&[0, 0], &[1000, 2000]]);
        assert_eq!(pick(views, &[], 0), Some(0)); // turbo-preview on kc1
        let views = grid(&[1, 1], &[&[1500, 3000], &[1000, 2000]]);
        assert_eq!(pick(views, &[], 0), Some(2)); // gpt-4 on kc1
    }

    #[test]
    fn go_selects_lowest_usage_across_all_combinations() {
        // turbo-preview: kc1=100, kc2=400, kc3=600; gpt-4: kc1=500, kc2=300, kc3=200
        let views = grid(&[1, 1], &[&[100, 400, 600], &[500, 300, 200]]);
        assert_eq!(pick(views, &[], 0), Some(0));
    }

    #[test]
    fn go_weighted_balancing() {
        // model-a: kc1=100, kc2=200; model-b: kc1=50, kc2=200
        let views = grid(&[1, 1], &[&[100, 200], &[50, 200]]);
        assert_eq!(pick(views, &[], 0), Some(2)); // model-b on kc1
        // With model-b at weight 2 both kc1 candidates score 100: tie → model-a.
        let views = grid(&[1, 2], &[&[100, 200], &[50, 200]]);
        assert_eq!(pick(views, &[], 0), Some(0));
    }

    #[test]
    fn go_weighted_balancing_prioritizes_lower_effective_usage() {
        let views = grid(&[1, 2, 3], &[&[100], &[100], &[100]]);
        assert_eq!(pick(views, &[], 0), Some(0));
    }

    #[test]
    fn go_weighted_balancing_distributes_load() {
        // expensive (w2)=100 → 200; cheap (w1)=150 → 150
        assert_eq!(pick(grid(&[2, 1], &[&[100], &[150]]), &[], 0), Some(1));
        // cheap grows to 201 → expensive wins with 200
        assert_eq!(pick(grid(&[2, 1], &[&[100], &[201]]), &[], 0), Some(0));
    }

    #[test]
    fn go_weighted_balancing_across_multiple_keys() {
        // model-a (w1): kc1=100, kc2=50, kc3=75; model-b (w2): kc1=50, kc2=100, kc3=30
        let views = grid(&[1, 2], &[&[100, 50, 75], &[50, 100, 30]]);
        assert_eq!(pick(views, &[], 0), Some(1)); // model-a on kc2, score 50
    }

    #[test]
    fn huge_usage_times_weight_does_not_overflow() {
        assert_eq!(
            pick([v(u64::MAX, u64::MAX), v(1, u64::MAX)], &[], 0),
            Some(1)
        );
    }

    #[test]
    fn among_cooling_candidates_ties_go_to_config_order() {
        let c = |ready_at| View {
            weight: 1,
            usage: 0,
            ready_at,
        };
        assert_eq!(pick([c(700), c(300), c(300)], &[], 100), Some(1));
        assert_eq!(pick([c(300), c(300)], &[0], 100), Some(1));
    }

    #[test]
    fn a_ready_candidate_beats_any_cooling_one_however_used() {
        let cooling = View {
            weight: 0,
            usage: 0,
            ready_at: 101,
        };
        assert_eq!(pick([cooling, v(9, u64::MAX)], &[], 100), Some(1));
    }
}
