//! Selection end to end on whole-model configs: the shipped LLaMA-2-7B numbers
//! (spec §3.3), disjointness under ties, seeded determinism, the head budget
//! for a GQA model, and index remapping across two `halving` stages (§3.5).

use apex_core::recorder::ModelScores;
use apex_core::selection::{select_layer, SelectionState};
use apex_core::settings::KSchedule;
use apex_core::{ApexSettings, ModelConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn config(json: &str) -> ModelConfig {
    ModelConfig::from_json_str(json, "test").unwrap()
}

fn llama2_7b() -> ModelConfig {
    config(
        r#"{"hidden_size": 4096, "intermediate_size": 11008, "num_attention_heads": 32,
            "num_key_value_heads": 32, "num_hidden_layers": 32, "vocab_size": 32008}"#,
    )
}

fn smollm2_135m() -> ModelConfig {
    config(
        r#"{"hidden_size": 576, "intermediate_size": 1536, "num_attention_heads": 9,
            "num_key_value_heads": 3, "num_hidden_layers": 30, "vocab_size": 49152,
            "tie_word_embeddings": true}"#,
    )
}

/// A permutation of 0..n as scores: unit i scores (i·step) mod n, so the unit
/// with score v is v·step⁻¹ mod n.
fn scrambled(n: usize, step: usize) -> Vec<f64> {
    (0..n).map(|i| ((i * step) % n) as f64).collect()
}

fn unit_with_score(v: usize, n: usize, inverse_step: usize) -> usize {
    (v * inverse_step) % n
}

#[test]
fn llama2_7b_reference_selection_matches_spec_3_3() {
    let cfg = llama2_7b();
    // 7919 is prime and coprime to 11008 = 2^8·43; 7919·8207 ≡ 1 (mod 11008).
    let (n, step, inverse) = (11008, 7919, 8207);
    assert_eq!((step * inverse) % n, 1);
    // Heads: 32, step 5, 5·13 = 65 ≡ 1 (mod 32).
    let scores = ModelScores {
        ffn: vec![scrambled(n, step); 32],
        heads: vec![scrambled(32, 5); 32],
    };
    let mut state = SelectionState::new(32);
    let selection = state
        .select(&ApexSettings::reference(), &cfg, &scores)
        .unwrap();
    assert_eq!(selection.m, 1);

    for plan in &selection.ffn {
        // k_f = ⌊11008·0.375/2⌋ = 2064, t_f = ⌊11008·0.465⌋ = 5118, so
        // extend_k = 3054 and |E| = 990.
        assert_eq!((plan.k(), plan.tuned()), (2064, 5118));
        assert_eq!(plan.tuned_only().len(), 990);
        let want_d: Vec<usize> = (0..2064).map(|v| unit_with_score(v, n, inverse)).collect();
        let want_a: Vec<usize> = (8944..11008)
            .rev()
            .map(|v| unit_with_score(v, n, inverse))
            .collect();
        let want_e: Vec<usize> = (2064..3054)
            .map(|v| unit_with_score(v, n, inverse))
            .collect();
        assert_eq!(plan.disadvantageous(), &want_d[..]);
        assert_eq!(plan.advantageous(), &want_a[..]);
        assert_eq!(plan.tuned_only(), &want_e[..]);
        let rest = &plan.order()[5118..];
        assert_eq!(rest.len(), 11008 - 5118);
        assert!(rest.windows(2).all(|w| w[0] < w[1]), "rest is ascending");
        assert!(rest
            .iter()
            .all(|&u| (3054..8944).contains(&((u * step) % n))));
    }
    for plan in &selection.attention {
        // k_h = 6, ⌊32·0.5625⌋ = 18, extend_k = 12, |E| = 6.
        assert_eq!((plan.k(), plan.tuned()), (6, 18));
        let want: Vec<usize> = (0..6).map(|v| (v * 13) % 32).collect();
        assert_eq!(plan.disadvantageous(), &want[..]);
        let want: Vec<usize> = (26..32).rev().map(|v| (v * 13) % 32).collect();
        assert_eq!(plan.advantageous(), &want[..]);
        let want: Vec<usize> = (6..12).map(|v| (v * 13) % 32).collect();
        assert_eq!(plan.tuned_only(), &want[..]);
    }
}

#[test]
fn a_and_d_are_disjoint_under_heavy_ties() {
    let flat = vec![1.0; 10];
    let sel = select_layer(&flat, 3, Some(8), &[], false).unwrap();
    assert_eq!(sel.advantageous, vec![0, 1, 2]);
    assert_eq!(sel.disadvantageous, vec![3, 4, 5]);
    assert_eq!(sel.extras, vec![6, 7]);

    // Rank-method scores are small integers with many ties.
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..200 {
        let n = rng.random_range(2..40);
        let scores: Vec<f64> = (0..n).map(|_| rng.random_range(-2..=2) as f64).collect();
        let k = rng.random_range(1..=n / 2);
        let sel = select_layer(&scores, k, Some(n), &[], false).unwrap();
        assert_eq!(sel.advantageous.len(), k);
        assert_eq!(sel.disadvantageous.len(), k);
        assert!(sel
            .advantageous
            .iter()
            .all(|a| !sel.disadvantageous.contains(a)));
        let plan = sel.layout(n).unwrap();
        let mut seen = plan.order().to_vec();
        seen.sort_unstable();
        assert_eq!(seen, (0..n).collect::<Vec<_>>());
        let worst_a = sel
            .advantageous
            .iter()
            .map(|&a| scores[a])
            .fold(f64::MAX, f64::min);
        let best_d = sel
            .disadvantageous
            .iter()
            .map(|&d| scores[d])
            .fold(f64::MIN, f64::max);
        assert!(worst_a >= best_d);
    }
}

fn random_scores(cfg: &ModelConfig, seed: u64) -> ModelScores {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut vectors = |n: usize| -> Vec<Vec<f64>> {
        (0..cfg.num_hidden_layers)
            .map(|_| (0..n).map(|_| rng.random::<f64>()).collect())
            .collect()
    };
    ModelScores {
        ffn: vectors(cfg.intermediate_size),
        heads: vectors(cfg.num_attention_heads),
    }
}

#[test]
fn gqa_budget_rule_picks_a_seeded_set_of_layers() {
    let cfg = smollm2_135m();
    let scores = random_scores(&cfg, 1);
    let select = |seed| {
        let settings = ApexSettings {
            seed,
            ..ApexSettings::reference()
        };
        SelectionState::new(30)
            .select(&settings, &cfg, &scores)
            .unwrap()
    };
    let chosen = |seed| -> Vec<usize> {
        select(seed)
            .attention
            .iter()
            .enumerate()
            .filter(|(_, plan)| plan.k() == 1)
            .map(|(layer, _)| layer)
            .collect()
    };
    // 3 groups · 30 layers · 0.375 = 33.75 < 2 per layer: ⌊33.75/2⌋ = 16 layers.
    assert_eq!(chosen(42).len(), 16);
    assert_eq!(chosen(42), chosen(42));
    assert_ne!(chosen(42), chosen(43));
    let selection = select(42);
    for plan in &selection.attention {
        // Chosen: D + A = 2 of 3 groups (⌊3·0.5625⌋ = 1 < 2k). Others: E = 1 group.
        let want = if plan.k() == 1 { 2 } else { 1 };
        assert_eq!(plan.tuned(), want);
    }
    // The budget does not touch the FFN: k = ⌊1536·0.375/2⌋ = 288, t = 714.
    assert!(selection
        .ffn
        .iter()
        .all(|p| (p.k(), p.tuned()) == (288, 714)));
}

#[test]
fn random_assessment_is_seeded_and_changes_the_selection() {
    let cfg = smollm2_135m();
    let scores = random_scores(&cfg, 2);
    let select = |random_assessment, seed| {
        let settings = ApexSettings {
            random_assessment,
            seed,
            ..ApexSettings::reference()
        };
        SelectionState::new(30)
            .select(&settings, &cfg, &scores)
            .unwrap()
    };
    let plain = select(false, 42);
    assert_eq!(select(true, 42), select(true, 42));
    assert_ne!(select(true, 42).ffn, plain.ffn);
    assert_ne!(select(true, 42).ffn, select(true, 43).ffn);
}

#[test]
fn halving_remaps_excluded_units_across_two_stages() {
    let cfg = config(
        r#"{"hidden_size": 8, "intermediate_size": 16, "num_attention_heads": 4,
            "num_key_value_heads": 2, "num_hidden_layers": 1, "vocab_size": 10}"#,
    );
    let settings = ApexSettings {
        u_ratio: 0.5,
        tuned_ffn_ratio: Some(0.75),
        k_schedule: KSchedule::Halving,
        ..ApexSettings::reference()
    };
    let heads = vec![vec![0.0; 4]];
    let mut state = SelectionState::new(1);

    // Stage 1, m = 1: k = ⌊16·0.5/2⌋ = 4, t = 12. Unit i scores 5i mod 16, so
    // score v belongs to unit 13v mod 16.
    let stage1 = state
        .select(
            &settings,
            &cfg,
            &ModelScores {
                ffn: vec![scrambled(16, 5)],
                heads: heads.clone(),
            },
        )
        .unwrap();
    let order1 = stage1.ffn[0].order().to_vec();
    assert_eq!(stage1.m, 1);
    assert_eq!(
        order1,
        vec![0, 13, 10, 7, 3, 6, 9, 12, 4, 1, 14, 11, 2, 5, 8, 15]
    );
    // D1 now sits at positions 0..4.
    assert_eq!(state.excluded_ffn(), &[vec![0, 1, 2, 3]]);

    // Stage 2, m = 2: k = ⌊16·0.5/4⌋ = 2. Position p scores 15 − p; C = 4..16.
    // D2 = [15, 14], A2 = [4, 5], E = 12 − 4 − 4 = 4 lowest left: [13, 12, 11, 10].
    let stage2 = state
        .select(
            &settings,
            &cfg,
            &ModelScores {
                ffn: vec![(0..16).map(|p| (15 - p) as f64).collect()],
                heads,
            },
        )
        .unwrap();
    let plan = &stage2.ffn[0];
    assert_eq!(stage2.m, 2);
    assert_eq!((plan.k(), plan.tuned()), (2, 12));
    assert_eq!(
        plan.order(),
        &[15, 14, 4, 5, 0, 1, 2, 3, 13, 12, 11, 10, 6, 7, 8, 9]
    );
    // O ← inverse(O ∪ D2): old positions 0..4 moved to 4..8, D2 to 0..2.
    assert_eq!(state.excluded_ffn(), &[vec![4, 5, 6, 7, 0, 1]]);
    // Traced back to the original units, O is D1 followed by D2.
    let original: Vec<usize> = state.excluded_ffn()[0]
        .iter()
        .map(|&p| order1[plan.order()[p]])
        .collect();
    assert_eq!(original, vec![0, 13, 10, 7, 15, 8]);
}
