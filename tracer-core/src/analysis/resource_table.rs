//! The live resources of one stream, by async id, in as little memory as they fit.
//!
//! A trace can hold millions of live resources at once (promises nobody collected before the
//! app exited), and every report keeps one record per live resource. In a hash map of records
//! the table doubles while it grows, and during the move both tables are allocated: three
//! records' space for each live resource at the peak. Here the records sit in fixed-size
//! chunks that never move (freed slots are reused), and the hash table holds only a slot
//! number per resource (4 bytes and a control byte), so the peak is one record per resource
//! plus a few bytes.

use hashbrown::HashTable;

use super::lifecycle::{FxHasher, Resource};
use std::hash::Hasher;

const CHUNK_BITS: u32 = 12;
const CHUNK: usize = 1 << CHUNK_BITS;

#[derive(Debug, Default)]
struct Slot<X> {
    id: u64,
    res: Resource<X>,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Table<X> {
    /// Slot numbers, hashed by their resource's id.
    index: HashTable<u32>,
    chunks: Vec<Box<[Slot<X>]>>,
    /// One bit per slot: holds a live resource.
    used: Vec<u64>,
    free: Vec<u32>,
}

impl<X> Default for Table<X> {
    fn default() -> Self {
        Table {
            index: HashTable::new(),
            chunks: Vec::new(),
            used: Vec::new(),
            free: Vec::new(),
        }
    }
}

/// The id in slot `i`; a free function, so the hash table's callbacks can borrow the chunks
/// while the table itself is borrowed mutably.
fn id_at<X>(chunks: &[Box<[Slot<X>]>], i: u32) -> u64 {
    chunks[(i >> CHUNK_BITS) as usize][i as usize & (CHUNK - 1)].id
}

fn hash(id: u64) -> u64 {
    let mut h = FxHasher::default();
    h.write_u64(id);
    h.finish()
}

impl<X: Default> Table<X> {
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    fn slot(&self, i: u32) -> &Slot<X> {
        &self.chunks[(i >> CHUNK_BITS) as usize][i as usize & (CHUNK - 1)]
    }

    fn slot_mut(&mut self, i: u32) -> &mut Slot<X> {
        &mut self.chunks[(i >> CHUNK_BITS) as usize][i as usize & (CHUNK - 1)]
    }

    fn find(&self, id: u64) -> Option<u32> {
        self.index.find(hash(id), |&i| id_at(&self.chunks, i) == id).copied()
    }

    pub(crate) fn get(&self, id: u64) -> Option<&Resource<X>> {
        self.find(id).map(|i| &self.slot(i).res)
    }

    pub(crate) fn get_mut(&mut self, id: u64) -> Option<&mut Resource<X>> {
        self.find(id).map(|i| &mut self.slot_mut(i).res)
    }

    /// The record of `id`, replaced by `res` if it was live already.
    pub(crate) fn insert(&mut self, id: u64, res: Resource<X>) -> &mut Resource<X> {
        let i = match self.find(id) {
            Some(i) => i,
            None => {
                let i = self.alloc();
                self.slot_mut(i).id = id;
                let chunks = &self.chunks;
                self.index.insert_unique(hash(id), i, |&j| hash(id_at(chunks, j)));
                i
            }
        };
        let slot = self.slot_mut(i);
        slot.res = res;
        &mut slot.res
    }

    pub(crate) fn remove(&mut self, id: u64) -> Option<Resource<X>> {
        let chunks = &self.chunks;
        let i = match self.index.find_entry(hash(id), |&i| id_at(chunks, i) == id) {
            Ok(entry) => entry.remove().0,
            Err(_) => return None,
        };
        self.used[(i / 64) as usize] &= !(1 << (i % 64));
        self.free.push(i);
        Some(std::mem::take(&mut self.slot_mut(i).res))
    }

    fn alloc(&mut self) -> u32 {
        let i = match self.free.pop() {
            Some(i) => i,
            None => {
                let n = self.chunks.len() * CHUNK;
                let Ok(first) = u32::try_from(n) else {
                    // 4 G slots would take hundreds of GB first; stay total rather than wrap.
                    panic!("more than 4 G live resources in one stream");
                };
                self.chunks.push((0..CHUNK).map(|_| Slot::default()).collect());
                self.used.resize(self.chunks.len() * CHUNK / 64, 0);
                // Handed out lowest first, so a table that never frees fills in id order.
                self.free.extend((first + 1..first + CHUNK as u32).rev());
                first
            }
        };
        self.used[(i / 64) as usize] |= 1 << (i % 64);
        i
    }

    /// Every live resource, in slot order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &Resource<X>)> {
        self.used.iter().enumerate().flat_map(move |(w, &bits)| {
            (0..64).filter(move |b| bits & (1 << b) != 0).map(move |b| {
                let s = self.slot((w * 64 + b) as u32);
                (s.id, &s.res)
            })
        })
    }

    /// Hands every live resource to `f` in id order and empties the table, memory included.
    pub(crate) fn drain_sorted(&mut self, mut f: impl FnMut(u64, Resource<X>)) {
        // Slot numbers, not (id, slot) pairs: a quarter of the memory on millions.
        let mut slots: Vec<u32> = Vec::with_capacity(self.len());
        for (w, &bits) in self.used.iter().enumerate() {
            slots.extend((0..64).filter(|b| bits & (1 << b) != 0).map(|b| (w * 64 + b) as u32));
        }
        slots.sort_unstable_by_key(|&i| self.slot(i).id);
        for i in slots {
            let slot = self.slot_mut(i);
            f(slot.id, std::mem::take(&mut slot.res));
        }
        *self = Table::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(type_name: u32) -> Resource {
        Resource {
            type_name,
            ..Default::default()
        }
    }

    #[test]
    fn slots_are_found_replaced_removed_and_reused() {
        let mut t: Table<()> = Table::default();
        for id in 0..10_000u64 {
            t.insert(id * 3, res(id as u32));
        }
        assert_eq!(t.len(), 10_000);
        assert_eq!(t.get(2_997).map(|r| r.type_name), Some(999));
        assert!(t.get(2_998).is_none());
        t.insert(2_997, res(7));
        assert_eq!((t.len(), t.get(2_997).map(|r| r.type_name)), (10_000, Some(7)));
        for id in 0..5_000u64 {
            assert_eq!(
                t.remove(id * 3).map(|r| r.type_name),
                Some(if id == 999 { 7 } else { id as u32 })
            );
        }
        assert!(t.remove(0).is_none());
        let chunks = t.chunks.len();
        for id in 0..5_000u64 {
            t.insert(1_000_000 + id, res(1));
        }
        assert_eq!(t.chunks.len(), chunks, "freed slots are reused");
        assert_eq!(t.iter().count(), 10_000);
        let mut seen = Vec::new();
        t.drain_sorted(|id, _| seen.push(id));
        assert!(seen.windows(2).all(|w| w[0] < w[1]) && seen.len() == 10_000);
        assert_eq!((t.len(), t.chunks.len()), (0, 0));
    }
}
