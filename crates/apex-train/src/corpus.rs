//! The self-generated corpus of the embedded default: a seeded probabilistic
//! grammar over a pseudo-word vocabulary with Zipf-distributed word choice and
//! noun→verb→object affinities, plus a *shifted* variant with some rules
//! changed, so that continued training has something new to learn.
//!
//! Grammar (each choice seeded):
//! ```text
//! S  → NP VP "."            NP → Det [Adj] Noun [Prep NP]     VP → Verb NP [Adv]
//! ```
//! A subject noun prefers its own few verbs and a verb its own few objects
//! (probability `affinity`); otherwise words follow Zipf's law within their
//! class. The shift re-draws half of the noun and verb preferences, moves
//! adjectives after the noun, and reverses which verbs are frequent.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashSet;

/// Word classes and their sizes.
const CLASSES: [(&str, usize); 6] = [
    ("det", 6),
    ("adj", 40),
    ("noun", 120),
    ("verb", 80),
    ("adv", 20),
    ("prep", 10),
];
const DET: usize = 0;
const ADJ: usize = 1;
const NOUN: usize = 2;
const VERB: usize = 3;
const ADV: usize = 4;
const PREP: usize = 5;

/// A generated language: vocabulary, frequencies and rules.
#[derive(Clone, Debug)]
pub struct Grammar {
    /// Per class, the spellings.
    words: Vec<Vec<String>>,
    /// Per class, the rank of each word (0 = most frequent).
    ranks: Vec<Vec<usize>>,
    /// Per noun, its preferred verbs.
    noun_verbs: Vec<Vec<usize>>,
    /// Per verb, its preferred object nouns.
    verb_objects: Vec<Vec<usize>>,
    adjective_after_noun: bool,
    /// Probability that an affinity is followed.
    affinity: f64,
}

fn pseudo_word(rng: &mut StdRng) -> String {
    const CONSONANTS: &[u8] = b"bdfgklmnprstvz";
    const VOWELS: &[u8] = b"aeiou";
    let syllables = rng.random_range(1..=3);
    let mut w = String::new();
    for _ in 0..syllables {
        w.push(CONSONANTS[rng.random_range(0..CONSONANTS.len())] as char);
        w.push(VOWELS[rng.random_range(0..VOWELS.len())] as char);
        if rng.random_bool(0.3) {
            w.push(CONSONANTS[rng.random_range(0..CONSONANTS.len())] as char);
        }
    }
    w
}

fn preferences(rng: &mut StdRng, count: usize, among: usize) -> Vec<Vec<usize>> {
    (0..count)
        .map(|_| (0..3).map(|_| rng.random_range(0..among)).collect())
        .collect()
}

/// Index drawn with probability ∝ 1/(rank+1)^1.1.
fn zipf(rng: &mut StdRng, ranks: &[usize]) -> usize {
    let weight = |r: usize| 1.0 / ((r + 1) as f64).powf(1.1);
    let total: f64 = ranks.iter().map(|&r| weight(r)).sum();
    let mut x = rng.random::<f64>() * total;
    for (i, &r) in ranks.iter().enumerate() {
        x -= weight(r);
        if x <= 0.0 {
            return i;
        }
    }
    ranks.len() - 1
}

impl Grammar {
    /// The base language of `seed`.
    pub fn base(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut seen = HashSet::new();
        let words: Vec<Vec<String>> = CLASSES
            .iter()
            .map(|&(_, n)| {
                let mut class = Vec::with_capacity(n);
                while class.len() < n {
                    let w = pseudo_word(&mut rng);
                    if seen.insert(w.clone()) {
                        class.push(w);
                    }
                }
                class
            })
            .collect();
        let ranks = CLASSES.iter().map(|&(_, n)| (0..n).collect()).collect();
        let noun_verbs = preferences(&mut rng, CLASSES[NOUN].1, CLASSES[VERB].1);
        let verb_objects = preferences(&mut rng, CLASSES[VERB].1, CLASSES[NOUN].1);
        Grammar {
            words,
            ranks,
            noun_verbs,
            verb_objects,
            adjective_after_noun: false,
            affinity: 0.75,
        }
    }

    /// The same vocabulary with changed rules (see the module docs).
    pub fn shifted(&self, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5_41F7);
        let mut g = self.clone();
        let verbs = CLASSES[VERB].1;
        for prefs in g.noun_verbs.iter_mut().step_by(2) {
            *prefs = (0..3).map(|_| rng.random_range(0..verbs)).collect();
        }
        let nouns = CLASSES[NOUN].1;
        for prefs in g.verb_objects.iter_mut().skip(1).step_by(2) {
            *prefs = (0..3).map(|_| rng.random_range(0..nouns)).collect();
        }
        g.ranks[VERB] = (0..verbs).rev().collect();
        g.adjective_after_noun = true;
        g
    }

    fn word(&self, class: usize, index: usize) -> &str {
        &self.words[class][index]
    }

    fn pick(&self, rng: &mut StdRng, class: usize) -> usize {
        zipf(rng, &self.ranks[class])
    }

    fn noun_phrase(&self, rng: &mut StdRng, noun: usize, depth: usize, out: &mut Vec<String>) {
        out.push(self.word(DET, self.pick(rng, DET)).to_string());
        let adjective = rng
            .random_bool(0.4)
            .then(|| self.word(ADJ, self.pick(rng, ADJ)).to_string());
        if let (Some(a), false) = (&adjective, self.adjective_after_noun) {
            out.push(a.clone());
        }
        out.push(self.word(NOUN, noun).to_string());
        if let (Some(a), true) = (adjective, self.adjective_after_noun) {
            out.push(a);
        }
        if depth < 1 && rng.random_bool(0.25) {
            out.push(self.word(PREP, self.pick(rng, PREP)).to_string());
            let inner = self.pick(rng, NOUN);
            self.noun_phrase(rng, inner, depth + 1, out);
        }
    }

    fn sentence(&self, rng: &mut StdRng) -> String {
        let mut out = Vec::new();
        let subject = self.pick(rng, NOUN);
        self.noun_phrase(rng, subject, 0, &mut out);
        let verb = if rng.random_bool(self.affinity) {
            self.noun_verbs[subject][rng.random_range(0..3)]
        } else {
            self.pick(rng, VERB)
        };
        out.push(self.word(VERB, verb).to_string());
        let object = if rng.random_bool(self.affinity) {
            self.verb_objects[verb][rng.random_range(0..3)]
        } else {
            self.pick(rng, NOUN)
        };
        self.noun_phrase(rng, object, 0, &mut out);
        if rng.random_bool(0.3) {
            out.push(self.word(ADV, self.pick(rng, ADV)).to_string());
        }
        out.join(" ") + "."
    }

    /// At least `min_bytes` of text: sentences separated by spaces, five per line.
    pub fn generate(&self, min_bytes: usize, seed: u64) -> String {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut text = String::with_capacity(min_bytes + 128);
        let mut count = 0usize;
        while text.len() < min_bytes {
            text.push_str(&self.sentence(&mut rng));
            count += 1;
            text.push(if count % 5 == 0 { '\n' } else { ' ' });
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_seeded_and_the_shift_changes_the_text() {
        let base = Grammar::base(3);
        let a = base.generate(2000, 9);
        assert_eq!(a, Grammar::base(3).generate(2000, 9));
        assert!(a.len() >= 2000 && a.is_ascii());
        let shifted = base.shifted(3).generate(2000, 9);
        assert_ne!(a, shifted);
    }

    #[test]
    fn word_frequencies_follow_the_ranks() {
        let g = Grammar::base(1);
        let text = g.generate(50_000, 2);
        let count = |w: &str| text.split([' ', '.', '\n']).filter(|t| *t == w).count();
        assert!(count(g.word(DET, 0)) > count(g.word(DET, 5)));
        let shifted = g.shifted(1);
        let text2 = shifted.generate(50_000, 2);
        let count2 = |w: &str| text2.split([' ', '.', '\n']).filter(|t| *t == w).count();
        // The shift reverses verb frequencies (affinities aside).
        let (v0, v79) = (g.word(VERB, 0), g.word(VERB, 79));
        assert!(count(v0) > count(v79));
        assert!(count2(v79) > count2(v0));
    }
}
