//! An output queue: items tagged with a priority class and a source (a key and a weight),
//! strict priority between classes, deficit round robin by weight within a class, bounded in
//! bytes and items.

use std::collections::VecDeque;

use super::class::Class;

/// Bytes a source of weight 1 may send per DRR turn: one full-size Ethernet frame. A source of
/// weight `w` gets `w ×` this per turn.
pub const QUANTUM_PER_WEIGHT: u64 = 1_514;

/// Where an item comes from: its class, and within the class the source it shares with (a key,
/// e.g. a port number) and that source's weight (1 or more).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Source {
    /// Priority class: a higher class always goes first.
    pub class: Class,
    /// The source's key within its class.
    pub key: u32,
    /// Its share against the other sources of its class (0 is taken as 1).
    pub weight: u16,
}

/// The queue's bounds: both hold at every moment (a single item larger than the byte bound is
/// taken when the queue is empty, so nothing is refused forever).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Limits {
    /// Most bytes queued.
    pub bytes: usize,
    /// Most items queued.
    pub items: usize,
}

/// What [`Scheduler::push`] did.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Pushed {
    /// The new item was queued.
    pub queued: bool,
    /// Items dropped to make room or refused (the new one included when not queued).
    pub dropped: usize,
}

/// One source's queue.
#[derive(Debug)]
struct Flow<T> {
    key: u32,
    weight: u16,
    /// Bytes it may still send this turn.
    deficit: u64,
    bytes: usize,
    items: VecDeque<(T, usize)>,
}

/// One class: its sources and the round robin over those with items.
#[derive(Debug)]
struct ClassQueue<T> {
    flows: Vec<Flow<T>>,
    /// Indices into `flows` of the sources with items, in turn order.
    active: VecDeque<usize>,
    /// The source at the front of `active` has had its quantum for this turn.
    granted: bool,
    bytes: usize,
}

impl<T> ClassQueue<T> {
    fn new() -> ClassQueue<T> {
        ClassQueue {
            flows: Vec::new(),
            active: VecDeque::new(),
            granted: false,
            bytes: 0,
        }
    }

    fn flow(&mut self, key: u32) -> usize {
        if let Some(i) = self.flows.iter().position(|f| f.key == key) {
            return i;
        }
        self.flows.push(Flow {
            key,
            weight: 1,
            deficit: 0,
            bytes: 0,
            items: VecDeque::new(),
        });
        self.flows.len() - 1
    }

    /// The flow whose head goes next (advancing the round robin as needed), or `None` when the
    /// class is empty. Calling it again without a pop returns the same flow.
    fn head(&mut self) -> Option<usize> {
        loop {
            let &f = self.active.front()?;
            let flow = self.flows.get_mut(f)?;
            if !self.granted {
                let quantum = u64::from(flow.weight.max(1)) * QUANTUM_PER_WEIGHT;
                flow.deficit = flow.deficit.saturating_add(quantum);
                self.granted = true;
            }
            let Some(&(_, len)) = flow.items.front() else {
                // Not possible: active flows have items. Repair rather than loop.
                self.active.pop_front();
                self.granted = false;
                continue;
            };
            if len as u64 <= flow.deficit {
                return Some(f);
            }
            self.active.rotate_left(1);
            self.granted = false;
        }
    }

    fn peek(&mut self) -> Option<&T> {
        let f = self.head()?;
        self.flows.get(f)?.items.front().map(|(t, _)| t)
    }

    fn pop(&mut self) -> Option<(T, usize)> {
        let f = self.head()?;
        let flow = self.flows.get_mut(f)?;
        let (item, len) = flow.items.pop_front()?;
        flow.deficit = flow.deficit.saturating_sub(len as u64);
        flow.bytes -= len;
        self.bytes -= len;
        if flow.items.is_empty() {
            // An idle source keeps no credit.
            flow.deficit = 0;
            self.active.pop_front();
            self.granted = false;
        }
        Some((item, len))
    }

    /// Drops the newest item of flow `f`.
    fn drop_tail(&mut self, f: usize) -> Option<usize> {
        let flow = self.flows.get_mut(f)?;
        let (_, len) = flow.items.pop_back()?;
        flow.bytes -= len;
        self.bytes -= len;
        if flow.items.is_empty() {
            flow.deficit = 0;
            if self.active.front() == Some(&f) {
                self.granted = false;
            }
            self.active.retain(|&a| a != f);
        }
        Some(len)
    }
}

/// A bounded output queue. Items leave by strict priority between classes (high, normal,
/// low) and, within a class, by deficit round robin over bytes between sources: each turn a
/// source of weight `w` may send `w × 1,514` bytes (credit it has not used stays for its next
/// turn while it has items), so under contention sources share the output in proportion to
/// their weights. Items of one source leave in the order they came.
///
/// When an item does not fit the bounds, the queue makes room at the expense of the heaviest
/// user: the source holding the most bytes in the lowest class that has items (counting the
/// new item as if queued) loses its newest items, or the new item is refused when that source
/// is its own. A flood thus cannot lock a higher class or a lighter source out of the queue.
/// Every item dropped is reported in [`Pushed::dropped`].
#[derive(Debug)]
pub struct Scheduler<T> {
    /// Low, normal, high.
    classes: [ClassQueue<T>; 3],
    limits: Limits,
    bytes: usize,
    items: usize,
}

impl<T> Scheduler<T> {
    /// An empty queue with these bounds.
    pub fn new(limits: Limits) -> Scheduler<T> {
        Scheduler {
            classes: [ClassQueue::new(), ClassQueue::new(), ClassQueue::new()],
            limits,
            bytes: 0,
            items: 0,
        }
    }

    /// Its bounds.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Sets new bounds; items already queued stay (new ones wait for room).
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Bytes queued.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Items queued.
    pub fn len(&self) -> usize {
        self.items
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.items == 0
    }

    fn fits(&self, len: usize) -> bool {
        self.items == 0
            || (self.items < self.limits.items
                && self.bytes.saturating_add(len) <= self.limits.bytes)
    }

    /// Queues `item` of `len` bytes from `source`, dropping items (possibly this one) when it
    /// does not fit; see [`Scheduler`]. The source's weight is the one given last.
    pub fn push(&mut self, item: T, len: usize, source: Source) -> Pushed {
        let mut dropped = 0;
        let new = source.class.index();
        while !self.fits(len) {
            // The lowest class with items.
            let Some((lowest, class)) = self
                .classes
                .iter_mut()
                .enumerate()
                .find(|(_, c)| c.bytes > 0)
            else {
                break;
            };
            if new < lowest {
                // Lower than everything queued: refused.
                return Pushed {
                    queued: false,
                    dropped: dropped + 1,
                };
            }
            let mine = |f: &Flow<T>| new == lowest && f.key == source.key;
            let heaviest = class
                .flows
                .iter()
                .enumerate()
                .filter(|(_, f)| !mine(f) && f.bytes > 0)
                .map(|(i, f)| (f.bytes, i))
                .max();
            let own = class.flows.iter().find(|f| mine(f)).map_or(0, |f| f.bytes);
            let victim = match heaviest {
                Some((bytes, i)) if new > lowest || bytes > own + len => i,
                // The new item's own source is the heaviest: the new item goes.
                _ => {
                    return Pushed {
                        queued: false,
                        dropped: dropped + 1,
                    }
                }
            };
            let Some(freed) = class.drop_tail(victim) else {
                break;
            };
            self.bytes -= freed;
            self.items -= 1;
            dropped += 1;
        }
        let Some(class) = self.classes.get_mut(source.class.index()) else {
            return Pushed {
                queued: false,
                dropped: dropped + 1,
            };
        };
        let f = class.flow(source.key);
        let Some(flow) = class.flows.get_mut(f) else {
            return Pushed {
                queued: false,
                dropped: dropped + 1,
            };
        };
        flow.weight = source.weight.max(1);
        if flow.items.is_empty() {
            class.active.push_back(f);
        }
        flow.items.push_back((item, len));
        flow.bytes += len;
        class.bytes += len;
        self.bytes += len;
        self.items += 1;
        Pushed {
            queued: true,
            dropped,
        }
    }

    /// The item that leaves next, left in the queue (the round robin may advance, which a
    /// later call does not undo).
    pub fn peek(&mut self) -> Option<&T> {
        let class = self.classes.iter_mut().rev().find(|c| c.bytes > 0)?;
        class.peek()
    }

    /// Takes the item that leaves next, with its length.
    pub fn pop(&mut self) -> Option<(T, usize)> {
        let class = self.classes.iter_mut().rev().find(|c| c.bytes > 0)?;
        let (item, len) = class.pop()?;
        self.bytes -= len;
        self.items -= 1;
        Some((item, len))
    }

    /// Drops every item; returns how many there were.
    pub fn clear(&mut self) -> usize {
        let n = self.items;
        for class in &mut self.classes {
            for flow in &mut class.flows {
                flow.items.clear();
                flow.bytes = 0;
                flow.deficit = 0;
            }
            class.active.clear();
            class.granted = false;
            class.bytes = 0;
        }
        self.bytes = 0;
        self.items = 0;
        n
    }

    /// Forgets a source that will send no more (e.g. a removed port): drops its items and
    /// returns how many there were.
    pub fn forget(&mut self, key: u32) -> usize {
        let mut n = 0;
        for class in &mut self.classes {
            let Some(f) = class.flows.iter().position(|f| f.key == key) else {
                continue;
            };
            while let Some(len) = class.drop_tail(f) {
                self.bytes -= len;
                self.items -= 1;
                n += 1;
            }
            // Indices in `active` stay valid: swap the last flow in only when none is active.
            if class.active.is_empty() {
                class.flows.swap_remove(f);
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FRAME: usize = 1_514;

    fn src(class: Class, key: u32, weight: u16) -> Source {
        Source { class, key, weight }
    }

    fn big() -> Limits {
        Limits {
            bytes: usize::MAX,
            items: usize::MAX,
        }
    }

    #[test]
    fn higher_classes_leave_first_and_each_source_in_order() {
        let mut q = Scheduler::new(big());
        q.push("low", 100, src(Class::Low, 1, 10));
        q.push("normal-1", 100, src(Class::Normal, 2, 10));
        q.push("normal-2", 100, src(Class::Normal, 2, 10));
        q.push("high", 100, src(Class::High, 3, 10));
        assert_eq!(q.peek(), Some(&"high"));
        assert_eq!(q.peek(), Some(&"high"));
        let order: Vec<_> = std::iter::from_fn(|| q.pop().map(|(t, _)| t)).collect();
        assert_eq!(order, ["high", "normal-1", "normal-2", "low"]);
        assert!(q.is_empty());
        assert_eq!((q.len(), q.bytes()), (0, 0));
        // A high item that comes while lower ones wait goes before them.
        q.push("low", 100, src(Class::Low, 1, 10));
        q.push("high", 100, src(Class::High, 3, 10));
        assert_eq!(q.pop().map(|(t, _)| t), Some("high"));
    }

    /// Bytes each source got when `n_bytes` left a queue kept full by every source.
    fn shares(weights: &[u16], sizes: &[usize], n_bytes: usize) -> Vec<usize> {
        let mut q = Scheduler::new(big());
        let mut got = vec![0usize; weights.len()];
        let mut next = vec![0usize; weights.len()];
        let refill = |q: &mut Scheduler<usize>, next: &mut Vec<usize>| {
            for (i, &w) in weights.iter().enumerate() {
                while q.classes[1]
                    .flows
                    .iter()
                    .find(|f| f.key == i as u32)
                    .map_or(0, |f| f.items.len())
                    < 4
                {
                    let len = sizes[(next[i] + i) % sizes.len()];
                    next[i] += 1;
                    q.push(i, len, src(Class::Normal, i as u32, w));
                }
            }
        };
        let mut total = 0;
        while total < n_bytes {
            refill(&mut q, &mut next);
            let (i, len) = q.pop().unwrap();
            got[i] += len;
            total += len;
        }
        got
    }

    #[test]
    fn sources_of_a_class_share_in_proportion_to_their_weights() {
        for (weights, sizes) in [
            (vec![30u16, 10], vec![FRAME]),
            (vec![10, 10, 10], vec![64, FRAME, 9_000]),
            (vec![100, 1], vec![FRAME, 60]),
            (vec![3, 7, 50], vec![65_536, 1_000, 64]),
        ] {
            let got = shares(&weights, &sizes, 200_000_000);
            let total_w: u32 = weights.iter().map(|&w| u32::from(w)).sum();
            let total: usize = got.iter().sum();
            for (g, w) in got.iter().zip(&weights) {
                let want = total as f64 * f64::from(*w) / f64::from(total_w);
                let error = (*g as f64 - want).abs() / want;
                assert!(error < 0.01, "{weights:?} {sizes:?}: {got:?}");
            }
        }
    }

    #[test]
    fn a_full_queue_makes_room_at_the_heaviest_source_of_the_lowest_class() {
        let mut q = Scheduler::new(Limits {
            bytes: 10 * FRAME,
            items: 100,
        });
        for _ in 0..10 {
            assert_eq!(q.push(1, FRAME, src(Class::Normal, 1, 10)).dropped, 0);
        }
        // Full: the flooding source's own next item is refused.
        assert_eq!(
            q.push(1, FRAME, src(Class::Normal, 1, 10)),
            Pushed {
                queued: false,
                dropped: 1
            }
        );
        // Another source of the class gets room at the flood's expense.
        assert_eq!(
            q.push(2, FRAME, src(Class::Normal, 2, 10)),
            Pushed {
                queued: true,
                dropped: 1
            }
        );
        // A high item pushes normal ones out (two for a double-size item).
        assert_eq!(
            q.push(3, 2 * FRAME, src(Class::High, 3, 10)),
            Pushed {
                queued: true,
                dropped: 2
            }
        );
        // A low item finds no room.
        assert_eq!(
            q.push(4, 60, src(Class::Low, 4, 10)),
            Pushed {
                queued: false,
                dropped: 1
            }
        );
        assert_eq!((q.bytes(), q.len()), (10 * FRAME, 9));
        let order: Vec<_> = std::iter::from_fn(|| q.pop().map(|(t, _)| t)).collect();
        // Source 1 has quantum for all of its items in its turn.
        assert_eq!(order, [3, 1, 1, 1, 1, 1, 1, 1, 2]);
        // An item larger than the bound goes into an empty queue, and nothing else then.
        assert!(q.push(5, 20 * FRAME, src(Class::Normal, 1, 10)).queued);
        assert!(!q.push(6, 1, src(Class::Normal, 1, 10)).queued);
    }

    #[test]
    fn the_item_bound_holds_and_forget_and_clear_empty_it() {
        let mut q = Scheduler::new(Limits {
            bytes: usize::MAX,
            items: 3,
        });
        for i in 0..5 {
            q.push(i, 10, src(Class::Normal, 1, 10));
        }
        assert_eq!(q.len(), 3);
        q.push(9, 10, src(Class::Low, 2, 10));
        assert_eq!(q.len(), 3);
        assert_eq!(q.forget(1), 3);
        assert!(q.is_empty());
        q.push(1, 10, src(Class::High, 1, 10));
        q.push(2, 10, src(Class::Low, 2, 10));
        assert_eq!(q.clear(), 2);
        assert_eq!((q.len(), q.bytes(), q.pop()), (0, 0, None));
        q.set_limits(big());
        assert_eq!(q.limits(), big());
    }

    proptest! {
        /// Random pushes and pops: the bounds hold, counts add up, each source's items leave in
        /// order, and nothing leaves while a higher class has items.
        #[test]
        fn bounds_order_and_priority_hold(
            ops in prop::collection::vec(
                (any::<bool>(), 0usize..3, 0u32..4, 1u16..=100, 1usize..=9_000),
                1..400,
            ),
            limit in 1_514usize..=100_000,
            items in 1usize..=64,
        ) {
            let limits = Limits { bytes: limit, items };
            let mut q = Scheduler::new(limits);
            let mut seq = 0u64;
            let mut last_out: std::collections::HashMap<(usize, u32), u64> = Default::default();
            let (mut pushed, mut popped, mut dropped) = (0usize, 0usize, 0usize);
            let class = |c: usize| [Class::Low, Class::Normal, Class::High][c];
            for (push, c, key, weight, len) in ops {
                if push {
                    seq += 1;
                    let r = q.push((c, key, seq), len, src(class(c), key, weight));
                    pushed += 1;
                    dropped += r.dropped;
                } else if let Some(((c, key, s), _)) = q.pop() {
                    popped += 1;
                    prop_assert!(q.classes.iter().skip(c + 1).all(|h| h.bytes == 0));
                    let prev = last_out.insert((c, key), s).unwrap_or(0);
                    prop_assert!(s > prev, "a source's items left out of order");
                }
                prop_assert!(q.len() <= items);
                prop_assert!(q.bytes() <= limit || q.len() == 1);
                prop_assert_eq!(pushed, popped + dropped + q.len());
                let sum: usize = q.classes.iter().map(|c| c.bytes).sum();
                prop_assert_eq!(sum, q.bytes());
            }
        }
    }
}
