//! Unit tests of the pair files, the clustering rule and the pair merge.

use super::*;

fn pair(d: u64, rep: u64, est: f64) -> Pair {
    Pair {
        d,
        rep,
        d_local: d as u32,
        rep_local: rep as u32,
        est,
    }
}

#[test]
fn pairs_file_round_trips_and_detects_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("b0000.bin");
    let pairs = vec![pair(5, 1, 0.8), pair(7, 1, 0.75), pair(7, 5, 0.9)];
    write_pairs(&p, &pairs).unwrap();
    let back: Vec<Pair> = read_pairs(&p).unwrap().collect::<Result<_>>().unwrap();
    assert_eq!(back, pairs);
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[20] ^= 1;
    std::fs::write(&p, &bytes).unwrap();
    let r: Result<Vec<Pair>> = read_pairs(&p).unwrap().collect();
    assert!(r.unwrap_err().to_string().contains("checksum"));
    bytes.truncate(bytes.len() - 3);
    std::fs::write(&p, &bytes).unwrap();
    let r: Result<Vec<Pair>> = read_pairs(&p).unwrap().collect();
    assert!(r.is_err(), "a truncated file was accepted");
}

#[test]
fn cluster_applies_the_online_rule() {
    // 1 ← 3 (0.8), 2 ← 3 (0.9): best match 2, root 1 (smallest). 4 ← 2 (0.7): root 1.
    // The same pair from two bands counts once.
    let pairs = vec![
        pair(3, 1, 0.8),
        pair(3, 2, 0.9),
        pair(3, 2, 0.9),
        pair(4, 2, 0.7),
        pair(9, 8, 0.75),
    ];
    let mut st = ClusterStats::default();
    let mut got = Vec::new();
    let uf = cluster(pairs.into_iter().map(Ok), &mut st, |r| {
        got.push(*r);
        Ok(())
    })
    .unwrap();
    assert_eq!(st.pairs, 4);
    assert_eq!(st.duplicates, 3);
    assert_eq!(got[0].d, 3);
    assert_eq!(got[0].matched.0, 2);
    assert_eq!(got[0].root.0, 1);
    assert_eq!((got[1].d, got[1].root.0, got[1].matched.0), (4, 1, 2));
    assert_eq!((got[2].d, got[2].root.0), (9, 8));
    let dups: Vec<(u64, u32)> = (0..uf.len())
        .filter(|&i| uf.dups[i] > 0)
        .map(|i| (uf.origin[i], uf.dups[i]))
        .collect();
    assert_eq!(dups.len(), 2);
    assert!(dups.contains(&(1, 2)) && dups.contains(&(8, 1)));
}

#[test]
fn merge_pairs_orders_streams() {
    let a = vec![pair(1, 0, 1.0), pair(5, 2, 1.0)];
    let b = vec![pair(3, 1, 1.0), pair(5, 1, 1.0)];
    let m: Vec<(u64, u64)> = merge_pairs(vec![
        Box::new(a.into_iter().map(Ok)),
        Box::new(b.into_iter().map(Ok)),
    ])
    .map(|p| p.map(|p| (p.d, p.rep)))
    .collect::<Result<_>>()
    .unwrap();
    assert_eq!(m, vec![(1, 0), (3, 1), (5, 1), (5, 2)]);
}
