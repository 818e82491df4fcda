//! Which operation a virtual user does next: a weighted choice between reads and writes.

use rand::Rng;

/// One operation of the mixed phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// `GET /api/articles` (sometimes filtered by tag or author, with an offset).
    ListArticles,
    /// `GET /api/articles/{slug}`.
    ReadArticle,
    /// `GET /api/articles/feed`.
    Feed,
    /// `GET /api/tags`.
    Tags,
    /// `GET /api/profiles/{username}`.
    Profile,
    /// `GET /api/articles/{slug}/comments`.
    ListComments,
    /// `POST /api/articles/{slug}/favorite`.
    Favorite,
    /// `DELETE /api/articles/{slug}/favorite`.
    Unfavorite,
    /// `POST /api/articles/{slug}/comments`.
    Comment,
    /// `POST /api/articles`.
    WriteArticle,
}

impl Op {
    /// Every operation, reads first.
    pub const ALL: [Op; 10] = [
        Op::ListArticles,
        Op::ReadArticle,
        Op::Feed,
        Op::Tags,
        Op::Profile,
        Op::ListComments,
        Op::Favorite,
        Op::Unfavorite,
        Op::Comment,
        Op::WriteArticle,
    ];

    /// Stable name used in summaries and span attributes.
    pub fn name(self) -> &'static str {
        match self {
            Op::ListArticles => "list_articles",
            Op::ReadArticle => "read_article",
            Op::Feed => "feed",
            Op::Tags => "tags",
            Op::Profile => "profile",
            Op::ListComments => "list_comments",
            Op::Favorite => "favorite",
            Op::Unfavorite => "unfavorite",
            Op::Comment => "comment",
            Op::WriteArticle => "write_article",
        }
    }

    /// True for operations that change data (they carry an `Idempotency-Key`).
    pub fn is_write(self) -> bool {
        matches!(
            self,
            Op::Favorite | Op::Unfavorite | Op::Comment | Op::WriteArticle
        )
    }
}

/// Relative weights inside each group; the read/write split comes from the write ratio.
const READS: [(Op, u32); 6] = [
    (Op::ListArticles, 30),
    (Op::ReadArticle, 25),
    (Op::Feed, 15),
    (Op::Tags, 10),
    (Op::Profile, 10),
    (Op::ListComments, 10),
];
const WRITES: [(Op, u32); 4] = [
    (Op::Favorite, 35),
    (Op::Unfavorite, 20),
    (Op::Comment, 30),
    (Op::WriteArticle, 15),
];

/// Picks the next operation.
#[derive(Debug, Clone, Copy)]
pub struct Mix {
    write_ratio: f64,
}

impl Mix {
    /// `write_ratio` is clamped to 0..=1.
    pub fn new(write_ratio: f64) -> Self {
        Mix {
            write_ratio: write_ratio.clamp(0.0, 1.0),
        }
    }

    /// Choose an operation. `has_favorites` tells whether the user has something to
    /// unfavorite; without it an unfavorite becomes a favorite.
    pub fn choose<R: Rng + ?Sized>(&self, rng: &mut R, has_favorites: bool) -> Op {
        let write = self.write_ratio > 0.0 && rng.random_bool(self.write_ratio);
        let op = if write {
            weighted(rng, &WRITES)
        } else {
            weighted(rng, &READS)
        };
        if op == Op::Unfavorite && !has_favorites {
            Op::Favorite
        } else {
            op
        }
    }
}

fn weighted<R: Rng + ?Sized>(rng: &mut R, table: &[(Op, u32)]) -> Op {
    let total: u32 = table.iter().map(|(_, w)| w).sum();
    let mut pick = rng.random_range(0..total);
    for (op, w) in table {
        if pick < *w {
            return *op;
        }
        pick -= w;
    }
    table[table.len() - 1].0
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use std::collections::HashMap;

    fn tally(mix: Mix, has_favorites: bool, n: usize) -> HashMap<Op, usize> {
        let mut rng = StdRng::seed_from_u64(7);
        let mut counts = HashMap::new();
        for _ in 0..n {
            *counts
                .entry(mix.choose(&mut rng, has_favorites))
                .or_default() += 1;
        }
        counts
    }

    #[test]
    fn a_zero_write_ratio_never_writes() {
        let counts = tally(Mix::new(0.0), true, 5_000);
        assert!(counts.keys().all(|op| !op.is_write()), "{counts:?}");
    }

    #[test]
    fn a_write_ratio_of_one_only_writes() {
        let counts = tally(Mix::new(1.0), true, 5_000);
        assert!(counts.keys().all(|op| op.is_write()), "{counts:?}");
        assert!(counts.contains_key(&Op::WriteArticle));
    }

    #[test]
    fn the_write_share_follows_the_ratio() {
        let n = 20_000;
        let counts = tally(Mix::new(0.25), true, n);
        let writes: usize = counts
            .iter()
            .filter(|(op, _)| op.is_write())
            .map(|(_, c)| c)
            .sum();
        let share = writes as f64 / n as f64;
        assert!((0.23..0.27).contains(&share), "write share {share}");
    }

    #[test]
    fn every_operation_is_chosen_at_a_middle_ratio() {
        let counts = tally(Mix::new(0.5), true, 20_000);
        for op in Op::ALL {
            assert!(
                counts.get(&op).copied().unwrap_or(0) > 0,
                "{op:?} never chosen"
            );
        }
    }

    #[test]
    fn without_favorites_an_unfavorite_becomes_a_favorite() {
        let counts = tally(Mix::new(1.0), false, 5_000);
        assert!(!counts.contains_key(&Op::Unfavorite));
        assert!(counts.contains_key(&Op::Favorite));
    }

    #[test]
    fn the_same_seed_gives_the_same_choices() {
        let mix = Mix::new(0.3);
        let mut a = StdRng::seed_from_u64(42);
        let mut b = StdRng::seed_from_u64(42);
        let xs: Vec<Op> = (0..100).map(|_| mix.choose(&mut a, true)).collect();
        let ys: Vec<Op> = (0..100).map(|_| mix.choose(&mut b, true)).collect();
        assert_eq!(xs, ys);
    }
}
