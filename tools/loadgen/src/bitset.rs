//! A growable bit set over per-sender sequence numbers: which messages were receipted,
//! which were delivered. Sequences are dense from 1, so a few bits per message suffice
//! where a hash set would need tens of bytes.

#[derive(Clone, Debug, Default)]
pub struct BitSet {
    words: Vec<u64>,
}

impl BitSet {
    /// Sets bit `i`; true if it was clear before.
    pub fn insert(&mut self, i: u32) -> bool {
        let (w, b) = ((i / 64) as usize, i % 64);
        if w >= self.words.len() {
            self.words.resize(w + 1, 0);
        }
        let mask = 1u64 << b;
        let fresh = self.words[w] & mask == 0;
        self.words[w] |= mask;
        fresh
    }

    pub fn contains(&self, i: u32) -> bool {
        self.words.get((i / 64) as usize).is_some_and(|w| w & (1u64 << (i % 64)) != 0)
    }

    /// The bits set, in increasing order.
    pub fn ones(&self) -> impl Iterator<Item = u32> + '_ {
        self.words
            .iter()
            .enumerate()
            .flat_map(|(w, &word)| (0..64u32).filter(move |b| word & (1u64 << b) != 0).map(move |b| w as u32 * 64 + b))
    }

    pub fn union_with(&mut self, other: &BitSet) {
        if other.words.len() > self.words.len() {
            self.words.resize(other.words.len(), 0);
        }
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= b;
        }
    }

    /// Bits set here and not in `other`.
    pub fn count_missing_from(&self, other: &BitSet) -> u64 {
        self.words
            .iter()
            .enumerate()
            .map(|(i, w)| u64::from((w & !other.words.get(i).copied().unwrap_or(0)).count_ones()))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_reports_first_time_only() {
        let mut s = BitSet::default();
        assert!(s.insert(1));
        assert!(!s.insert(1));
        assert!(s.insert(1000));
        assert!(!s.insert(1000));
        assert_eq!(s.count_missing_from(&BitSet::default()), 2);
    }

    #[test]
    fn contains_and_ones() {
        let mut s = BitSet::default();
        for i in [3, 64, 200] {
            s.insert(i);
        }
        assert!(s.contains(64) && !s.contains(65) && !s.contains(100_000));
        assert_eq!(s.ones().collect::<Vec<_>>(), vec![3, 64, 200]);
    }

    #[test]
    fn missing_and_union() {
        let mut receipted = BitSet::default();
        let mut delivered = BitSet::default();
        for i in 1..=200 {
            receipted.insert(i);
        }
        for i in 1..=150 {
            delivered.insert(i);
        }
        assert_eq!(receipted.count_missing_from(&delivered), 50);
        let mut late = BitSet::default();
        late.insert(199);
        delivered.union_with(&late);
        assert_eq!(receipted.count_missing_from(&delivered), 49);
        assert_eq!(delivered.count_missing_from(&receipted), 0);
    }
}
