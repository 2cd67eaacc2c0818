//! VM slots ([`VmRecord::slot`]): a cluster-unique number per VM, never reused, from which
//! every host derives the user its QEMU runs as. The next one is kept under
//! [`keys::VM_SLOT_NEXT`] and written with each record that takes one.

use std::sync::Mutex;

use vinfra_store::{Compare, CompareOp, CompareTarget, Op, Store, Txn};

use super::records::{self as keys, VmRecord};
use crate::error::RecordError;

/// The slots handed out so far: the next one, in memory, written with each VM record that
/// takes one (creates take theirs under the placement lock, so they go to the store in order).
#[derive(Debug)]
pub struct SlotCounter {
    next: Mutex<u32>,
}

impl SlotCounter {
    /// Reads the next slot from the store, and gives every VM record without one a slot (records
    /// from before slots), each written in a transaction of its own that checks the record did
    /// not change meanwhile.
    pub(super) fn load(store: &dyn Store) -> Result<SlotCounter, RecordError> {
        let stored = keys::get::<u32>(store, keys::VM_SLOT_NEXT)?.map_or(0, |v| v.value);
        let records = keys::range::<VmRecord>(store, keys::VMS)?;
        let mut next = records
            .iter()
            .filter_map(|(_, r)| r.value.slot)
            .map(|s| s.saturating_add(1))
            .max()
            .unwrap_or(0)
            .max(stored);
        for (name, mut rec) in records {
            if rec.value.slot.is_some() {
                continue;
            }
            rec.value.slot = Some(next);
            let key = keys::vm_key(&name);
            let written = store.txn(Txn {
                compare: vec![Compare {
                    key: key.clone(),
                    op: CompareOp::Equal,
                    target: CompareTarget::ModRevision(rec.mod_revision),
                }],
                success: vec![
                    Op::Put {
                        key,
                        value: keys::encode(&rec.value)?,
                        lease: 0,
                    },
                    Self::put_next(next + 1)?,
                ],
                failure: vec![],
            })?;
            if written.succeeded {
                tracing::info!(vm = name, slot = next, "VM given a slot");
                next += 1;
            }
        }
        Ok(SlotCounter {
            next: Mutex::new(next),
        })
    }

    /// Takes the next slot; `put` goes into the transaction that writes the record holding it.
    pub fn take(&self) -> Result<(u32, Op), RecordError> {
        self.take_block(1)
    }

    /// Takes the next `count` slots (at least one), the first returned: `put` goes into the
    /// transaction that writes the record holding the first, and the others are the records'
    /// that follow (written without it: a slot of the block left unused is never handed out).
    pub fn take_block(&self, count: u32) -> Result<(u32, Op), RecordError> {
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let first = *next;
        *next = next
            .checked_add(count.max(1))
            .ok_or(RecordError::SlotsExhausted)?;
        Ok((first, Self::put_next(*next)?))
    }

    /// Gives back the block of `count` slots from `first` (a create refused before any of its
    /// VMs reached a host, their records gone) if no slot was taken after it; else nothing.
    /// The stored counter stays ahead until the next create writes it: a console that restarts
    /// meanwhile starts after the block.
    pub fn give_back(&self, first: u32, count: u32) {
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        if first.checked_add(count.max(1)) == Some(*next) {
            *next = first;
        }
    }

    fn put_next(next: u32) -> Result<Op, RecordError> {
        Ok(Op::Put {
            key: keys::VM_SLOT_NEXT.to_string(),
            value: keys::encode(&next)?,
            lease: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use vinfra_store::SqliteStore;

    use super::*;
    use crate::state::vm_mirror::tests::vm;

    #[test]
    fn records_without_slots_get_new_ones_and_slots_are_never_handed_out_twice() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("console.db")).unwrap();
        let mut a = vm("a", "h1", &[]);
        a.slot = Some(4);
        keys::put(&store, &keys::vm_key("a"), &a).unwrap();
        keys::put(&store, &keys::vm_key("b"), &vm("b", "h1", &[])).unwrap();
        // A deleted VM had slot 6: the counter says so.
        keys::put(&store, keys::VM_SLOT_NEXT, &7u32).unwrap();
        let slots = SlotCounter::load(&store).unwrap();
        let b = keys::get::<VmRecord>(&store, &keys::vm_key("b"))
            .unwrap()
            .unwrap()
            .value;
        assert_eq!(b.slot, Some(7), "after every slot handed out");
        let (slot, put) = slots.take().unwrap();
        assert_eq!(slot, 8);
        store
            .txn(Txn {
                compare: vec![],
                success: vec![put],
                failure: vec![],
            })
            .unwrap();
        assert_eq!(slots.take().unwrap().0, 9);
        // Loaded again (a console restart): on from what was written.
        let again = SlotCounter::load(&store).unwrap();
        assert_eq!(again.take().unwrap().0, 9);
    }
}
