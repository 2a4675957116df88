//! Union-find over document numbers, with the lowest number as every cluster's root.
//!
//! Making the smallest document number the root (rather than union by rank) makes the root
//! a pure function of the set of accepted edges, independent of the order in which edges
//! are applied; with path halving, finds stay near-constant in practice. The root of a
//! cluster is therefore its earliest document, which the online rule always keeps.
//!
//! **Memory:** 8 bytes per document (`parent` and `size`, both `u32`).

/// Disjoint sets over `0..len()`.
#[derive(Debug, Clone, Default)]
pub struct UnionFind {
    parent: Vec<u32>,
    size: Vec<u32>,
}

impl UnionFind {
    /// An empty structure.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a singleton set and return its number.
    pub fn push(&mut self) -> u32 {
        let i = self.parent.len() as u32;
        self.parent.push(i);
        self.size.push(1);
        i
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.parent.len()
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.parent.is_empty()
    }

    /// The root (smallest member) of `x`'s set.
    pub fn find(&mut self, x: u32) -> u32 {
        find_root(&mut self.parent, x)
    }

    /// Merge the sets of `a` and `b`; return the new root (the smaller of the two roots).
    pub fn union(&mut self, a: u32, b: u32) -> u32 {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return ra;
        }
        let (root, child) = if ra < rb { (ra, rb) } else { (rb, ra) };
        self.parent[child as usize] = root;
        self.size[root as usize] += self.size[child as usize];
        root
    }

    /// Size of `x`'s set.
    pub fn set_size(&mut self, x: u32) -> u32 {
        let r = self.find(x);
        self.size[r as usize]
    }

    /// Bytes held.
    pub fn heap_bytes(&self) -> usize {
        (self.parent.capacity() + self.size.capacity()) * 4
    }
}

/// The root of `x` in a parent-pointer forest, halving the path on the way (shared by the
/// streaming index and the distributed pair clustering, whose root rules differ).
pub fn find_root(parent: &mut [u32], mut x: u32) -> u32 {
    while parent[x as usize] != x {
        let gp = parent[parent[x as usize] as usize];
        parent[x as usize] = gp;
        x = gp;
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_smallest_member_regardless_of_order() {
        let mut a = UnionFind::new();
        let mut b = UnionFind::new();
        for _ in 0..6 {
            a.push();
            b.push();
        }
        for (x, y) in [(4, 5), (2, 5), (1, 3)] {
            a.union(x, y);
        }
        for (x, y) in [(1, 3), (5, 2), (5, 4)] {
            b.union(x, y);
        }
        for i in 0..6 {
            assert_eq!(a.find(i), b.find(i));
        }
        assert_eq!(a.find(5), 2);
        assert_eq!(a.set_size(4), 3);
        assert_eq!(a.find(3), 1);
        assert_eq!(a.set_size(0), 1);
    }
}
