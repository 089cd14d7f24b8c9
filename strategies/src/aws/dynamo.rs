//! A DynamoDB-like table, as pure state taking `now`: conditional writes, atomic counters and
//! capacity with throttling, for idempotent results, fan-in counters, quotas and cancel flags.
//!
//! Rules (Amazon DynamoDB Developer Guide):
//! - a conditional put (`attribute_not_exists`) fails with `ConditionalCheckFailedException` when
//!   the item exists, and writes nothing ("Condition expressions");
//! - `UpdateItem` with `ADD` on a number creates it at 0 when absent and returns the new value
//!   with `ReturnValues: UPDATED_NEW`, atomically ("Atomic counters");
//! - capacity is on demand (never throttled here) or provisioned in read and write units per
//!   second, one unit per item of up to 1 KB (4 KB for a strongly consistent read; these items
//!   are small); unused capacity is kept for up to 300 seconds as burst ("Burst capacity"); past
//!   it a request fails with `ProvisionedThroughputExceededException` ("Read/write capacity
//!   mode").

use std::time::Duration;

use simkit::quota::Quota;
use smallvec::SmallVec;

use super::FxIndexMap as Hashed;

/// How the table is billed and throttled.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Capacity {
    /// Pay per request, no throttling (the default).
    #[default]
    OnDemand,
    /// This many read and write units per second, with 300 s of burst.
    Provisioned {
        /// Read capacity units per second.
        read: u64,
        /// Write capacity units per second.
        write: u64,
    },
}

/// Why a request did nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DynamoError {
    /// The condition did not hold (the item exists).
    ConditionalCheckFailed,
    /// Past the provisioned capacity; worth retrying after `retry_after`.
    ProvisionedThroughputExceeded {
        /// When the capacity would be there.
        retry_after: Duration,
    },
}

/// An attribute's value: DynamoDB's number (`N`, whole numbers here) and boolean (`BOOL`)
/// types, the ones the choreographies store ("Supported data types" in the Developer Guide).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attr {
    /// `N`.
    N(i64),
    /// `BOOL`.
    Bool(bool),
}

impl From<i64> for Attr {
    fn from(n: i64) -> Self {
        Self::N(n)
    }
}

impl From<u32> for Attr {
    fn from(n: u32) -> Self {
        Self::N(i64::from(n))
    }
}

impl From<bool> for Attr {
    fn from(b: bool) -> Self {
        Self::Bool(b)
    }
}

/// An item: named attributes, in the order they were first set. Up to three stay inline, so
/// that writing or reading an item allocates nothing (a JSON object per item cost a tree
/// allocation and its clone on every read: a fifth of the choreography's time).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Item(SmallVec<[(&'static str, Attr); 3]>);

impl Clone for Item {
    fn clone(&self) -> Self {
        // A copy of the slice (the derived clone went element by element).
        Self(SmallVec::from_slice(&self.0))
    }
}

impl Item {
    /// An item with no attribute.
    pub fn new() -> Self {
        Self::default()
    }

    /// This item with `name` set to `value`.
    #[must_use]
    pub fn with(mut self, name: &'static str, value: impl Into<Attr>) -> Self {
        self.set(name, value.into());
        self
    }

    /// Sets `name` to `value`.
    pub fn set(&mut self, name: &'static str, value: Attr) {
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => *v = value,
            None => self.0.push((name, value)),
        }
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<Attr> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    /// The number `name`, when it is one.
    pub fn number(&self, name: &str) -> Option<i64> {
        match self.get(name) {
            Some(Attr::N(n)) => Some(n),
            _ => None,
        }
    }

    /// Whether `name` is the boolean true.
    pub fn flag(&self, name: &str) -> bool {
        self.get(name) == Some(Attr::Bool(true))
    }

    /// Whether the item has `name`.
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

/// A table key as DynamoDB keeps one: a partition key, written `name#id` (`result#12`), and an
/// optional numeric sort key (`3`); `result#12#3` in words. Typed, so that reaching an item
/// hashes a few integers and allocates nothing (string keys, built with `format!` and split at
/// their last `#` on every request, were a sixth of the choreography's time).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// The partition key's name (`result`).
    pub name: &'static str,
    /// The partition key's number (a file's id).
    pub id: u32,
    /// The sort key (a chunk's index), if the key has one.
    pub sort: Option<u32>,
}

impl Key {
    /// `name#id`, no sort key.
    pub fn new(name: &'static str, id: u32) -> Key {
        Key { name, id, sort: None }
    }

    /// `name#id#sort`.
    pub fn sorted(name: &'static str, id: u32, sort: u32) -> Key {
        Key {
            name,
            id,
            sort: Some(sort),
        }
    }

    fn partition(self) -> Partition {
        Partition(Name(self.name), self.id)
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}#{}", self.name, self.id)?;
        match self.sort {
            Some(s) => write!(f, "#{s}"),
            None => Ok(()),
        }
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

/// A partition key's name, compared by address first: the names come from a few literals, so
/// two equal names are nearly always the same `&'static str` and no bytes are compared.
#[derive(Clone, Copy, Debug)]
struct Name(&'static str);

impl PartialEq for Name {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.0, other.0) || self.0 == other.0
    }
}

impl Eq for Name {}

impl std::hash::Hash for Name {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // The length and the first byte: what tells a design's few names apart, in one step
        // (equal names have equal both, so equal hashes).
        state.write_usize(self.0.len() << 8 | usize::from(self.0.as_bytes().first().copied().unwrap_or(0)));
    }
}

/// A partition key: a name and a number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Partition(Name, u32);

/// A table's items: those with a sort key by partition, then by sort key, both levels hashed
/// (a get or a put is two lookups of a few integers); those without one (`file#F`, kept for
/// every file of a run) in one flat map, as a partition each would cost a map apiece. A query
/// sorts what it reads into key order, as DynamoDB returns it, so no hash order reaches output.
///
/// A partition left empty stays (with its allocation) until empty ones outnumber the others:
/// a claim comes and goes on every call, and making and dropping its partition each time cost
/// an allocation and a free. Memory stays within twice the live partitions.
#[derive(Debug, Default)]
struct Items {
    singles: Hashed<Partition, Item>,
    partitions: Hashed<Partition, Hashed<u32, Item>>,
    len: usize,
    /// Partitions with no item.
    empty: usize,
}

/// Where an item is ([`Items::find`]): its index in the flat map, or its partition's and its own.
#[derive(Clone, Copy, Debug)]
enum At {
    Single(usize),
    Sorted(usize, usize),
}

impl Items {
    fn get(&self, key: Key) -> Option<&Item> {
        match key.sort {
            None => self.singles.get(&key.partition()),
            Some(sort) => self.partitions.get(&key.partition())?.get(&sort),
        }
    }

    /// The item at `key`, created empty when absent.
    fn entry(&mut self, key: Key) -> &mut Item {
        let Some(sort) = key.sort else {
            let i = match self.singles.get_index_of(&key.partition()) {
                Some(i) => i,
                None => {
                    self.len += 1;
                    self.singles.insert_full(key.partition(), Item::new()).0
                }
            };
            return &mut self.singles[i];
        };
        let part = match self.partitions.get_index_of(&key.partition()) {
            Some(i) => &mut self.partitions[i],
            None => {
                self.empty += 1;
                self.partitions.entry(key.partition()).or_default()
            }
        };
        let i = match part.get_index_of(&sort) {
            Some(i) => i,
            None => {
                self.len += 1;
                if part.is_empty() {
                    self.empty -= 1;
                }
                part.insert_full(sort, Item::new()).0
            }
        };
        &mut part[i]
    }

    fn insert(&mut self, key: Key, item: Item) {
        *self.entry(key) = item;
    }

    /// Where the item at `key` is, found once for a conditional write that then writes or
    /// removes it in place.
    fn find(&self, key: Key) -> Option<At> {
        match key.sort {
            None => self.singles.get_index_of(&key.partition()).map(At::Single),
            Some(sort) => {
                let p = self.partitions.get_index_of(&key.partition())?;
                let i = self.partitions[p].get_index_of(&sort)?;
                Some(At::Sorted(p, i))
            }
        }
    }

    /// The item found at `at`.
    fn at(&self, at: At) -> &Item {
        match at {
            At::Single(i) => &self.singles[i],
            At::Sorted(p, i) => &self.partitions[p][i],
        }
    }

    /// Replaces the item found at `at`.
    fn replace(&mut self, at: At, item: Item) {
        match at {
            At::Single(i) => self.singles[i] = item,
            At::Sorted(p, i) => self.partitions[p][i] = item,
        }
    }

    /// Removes the item found at `at`.
    fn remove_at(&mut self, at: At) {
        self.len -= 1;
        match at {
            At::Single(i) => {
                self.singles.swap_remove_index(i);
            }
            At::Sorted(p, i) => {
                let part = &mut self.partitions[p];
                part.swap_remove_index(i);
                if part.is_empty() {
                    self.emptied();
                }
            }
        }
    }

    fn emptied(&mut self) {
        self.empty += 1;
        if self.empty > 64 && self.empty > self.partitions.len() / 2 {
            self.partitions.retain(|_, part| !part.is_empty());
            self.empty = 0;
        }
    }

    fn remove(&mut self, key: Key) {
        if let Some(at) = self.find(key) {
            self.remove_at(at);
        }
    }

    /// The items of the partition `name#id`, in key order (the one without a sort key first),
    /// as DynamoDB's `Query` reads one partition key.
    fn query(&self, name: &'static str, id: u32) -> Vec<(Key, Item)> {
        let single = self
            .singles
            .get(&Partition(Name(name), id))
            .map(|item| (Key::new(name, id), item.clone()));
        let mut sorted: Vec<(Key, Item)> = self
            .partitions
            .get(&Partition(Name(name), id))
            .into_iter()
            .flatten()
            .map(|(sort, item)| (Key::sorted(name, id, *sort), item.clone()))
            .collect();
        sorted.sort_by_key(|(k, _)| *k);
        single.into_iter().chain(sorted).collect()
    }

    /// Every item whose partition key is named `name` (any id), in key order: a `Scan` with a
    /// filter on the key, reading every partition.
    fn scan(&self, name: &str) -> Vec<(Key, Item)> {
        let mut out: Vec<(Key, Item)> = self
            .singles
            .iter()
            .filter(|(p, _)| p.0.0 == name)
            .map(|(&Partition(Name(name), id), item)| (Key::new(name, id), item.clone()))
            .chain(self.partitions.iter().filter(|(p, _)| p.0.0 == name).flat_map(
                |(&Partition(Name(name), id), part)| {
                    part.iter()
                        .map(move |(sort, item)| (Key::sorted(name, id, *sort), item.clone()))
                },
            ))
            .collect();
        out.sort_by_key(|(k, _)| *k);
        out
    }
}

/// Seconds of unused capacity DynamoDB keeps for bursts.
const BURST_SECONDS: u64 = 300;

/// One table keyed by a string.
#[derive(Debug)]
pub struct Table {
    items: Items,
    reads: Option<Quota>,
    writes: Option<Quota>,
    /// Read request units used.
    pub read_units: u64,
    /// Write request units used.
    pub write_units: u64,
    /// Requests refused for capacity.
    pub throttled: u64,
}

impl Table {
    /// An empty table.
    pub fn new(capacity: Capacity) -> Self {
        let (reads, writes) = match capacity {
            Capacity::OnDemand => (None, None),
            Capacity::Provisioned { read, write } => (
                Some(Quota::new(read.max(1) * BURST_SECONDS, read.max(1))),
                Some(Quota::new(write.max(1) * BURST_SECONDS, write.max(1))),
            ),
        };
        Self {
            items: Items::default(),
            reads,
            writes,
            read_units: 0,
            write_units: 0,
            throttled: 0,
        }
    }

    fn take(quota: &mut Option<Quota>, throttled: &mut u64, now: Duration) -> Result<(), DynamoError> {
        match quota {
            None => Ok(()),
            Some(q) => q.try_take(now, 1).map_err(|wait| {
                *throttled += 1;
                DynamoError::ProvisionedThroughputExceeded {
                    retry_after: wait.unwrap_or(Duration::from_secs(1)),
                }
            }),
        }
    }

    fn write_unit(&mut self, now: Duration) -> Result<(), DynamoError> {
        Self::take(&mut self.writes, &mut self.throttled, now)?;
        self.write_units += 1;
        Ok(())
    }

    /// Whether capacity is provisioned (requests need the time, for throttling).
    pub fn provisioned(&self) -> bool {
        self.reads.is_some() || self.writes.is_some()
    }

    /// `GetItem`.
    pub fn get(&mut self, now: Duration, key: Key) -> Result<Option<Item>, DynamoError> {
        Self::take(&mut self.reads, &mut self.throttled, now)?;
        self.read_units += 1;
        Ok(self.items.get(key).cloned())
    }

    /// `PutItem`, unconditional.
    pub fn put(&mut self, now: Duration, key: Key, item: Item) -> Result<(), DynamoError> {
        self.write_unit(now)?;
        self.items.insert(key, item);
        Ok(())
    }

    /// `PutItem` with `attribute_not_exists`: writes only a new item. A failed condition still
    /// consumes a write unit (DynamoDB bills it).
    pub fn put_if_absent(&mut self, now: Duration, key: Key, item: Item) -> Result<(), DynamoError> {
        self.write_unit(now)?;
        if self.items.find(key).is_some() {
            return Err(DynamoError::ConditionalCheckFailed);
        }
        self.items.insert(key, item);
        Ok(())
    }

    /// `PutItem` with a condition that fails when the existing item satisfies `blocks`
    /// (`attribute_not_exists(pk) OR NOT blocks`); a failed condition consumes a write unit.
    pub fn put_unless(
        &mut self,
        now: Duration,
        key: Key,
        item: Item,
        blocks: impl FnOnce(&Item) -> bool,
    ) -> Result<(), DynamoError> {
        self.write_unit(now)?;
        match self.items.find(key) {
            Some(at) if blocks(self.items.at(at)) => Err(DynamoError::ConditionalCheckFailed),
            Some(at) => {
                self.items.replace(at, item);
                Ok(())
            }
            None => {
                self.items.insert(key, item);
                Ok(())
            }
        }
    }

    /// `UpdateItem … SET attr = value`, creating the item when absent.
    pub fn set(&mut self, now: Duration, key: Key, attr: &'static str, value: Attr) -> Result<(), DynamoError> {
        self.write_unit(now)?;
        self.items.entry(key).set(attr, value);
        Ok(())
    }

    /// `Query` of the partition `name#id`, in sort-key order. It consumes a read unit per 4 KB
    /// read, rounded up ("Read consumption for Query"); these items are about 100 bytes, so one
    /// unit per 40 items, at least one.
    pub fn query(&mut self, now: Duration, name: &'static str, id: u32) -> Result<Vec<(Key, Item)>, DynamoError> {
        Self::take(&mut self.reads, &mut self.throttled, now)?;
        let out = self.items.query(name, id);
        self.read_units += (out.len() as u64).div_ceil(40).max(1);
        Ok(out)
    }

    /// `Scan` for the items whose partition key is named `name`, in key order; billed as a query
    /// of what it returns.
    pub fn scan(&mut self, now: Duration, name: &str) -> Result<Vec<(Key, Item)>, DynamoError> {
        Self::take(&mut self.reads, &mut self.throttled, now)?;
        let out = self.items.scan(name);
        self.read_units += (out.len() as u64).div_ceil(40).max(1);
        Ok(out)
    }

    /// `UpdateItem … ADD attr n`, returning the new value.
    pub fn add(&mut self, now: Duration, key: Key, attr: &'static str, n: i64) -> Result<i64, DynamoError> {
        self.write_unit(now)?;
        let item = self.items.entry(key);
        let new = item.number(attr).unwrap_or(0) + n;
        item.set(attr, Attr::N(new));
        Ok(new)
    }

    /// `DeleteItem`.
    pub fn delete(&mut self, now: Duration, key: Key) -> Result<(), DynamoError> {
        self.write_unit(now)?;
        self.items.remove(key);
        Ok(())
    }

    /// `DeleteItem` with a condition on the item (`#attr = :value`, say): deletes only an item
    /// for which `holds` is true; otherwise `ConditionalCheckFailed` (an absent item fails too).
    /// A failed condition still consumes a write unit.
    pub fn delete_if(&mut self, now: Duration, key: Key, holds: impl FnOnce(&Item) -> bool) -> Result<(), DynamoError> {
        self.write_unit(now)?;
        match self.items.find(key) {
            Some(at) if holds(self.items.at(at)) => {
                self.items.remove_at(at);
                Ok(())
            }
            _ => Err(DynamoError::ConditionalCheckFailed),
        }
    }

    /// Items in the table.
    pub fn len(&self) -> usize {
        self.items.len
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.items.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_conditional_put_writes_once_and_bills_the_refusal() {
        let mut t = Table::new(Capacity::OnDemand);
        assert_eq!(
            t.put_if_absent(secs(0), Key::sorted("file", 1, 3), Item::new().with("valid", true)),
            Ok(())
        );
        assert_eq!(
            t.put_if_absent(secs(0), Key::sorted("file", 1, 3), Item::new().with("valid", false)),
            Err(DynamoError::ConditionalCheckFailed)
        );
        assert_eq!(
            t.get(secs(0), Key::sorted("file", 1, 3)),
            Ok(Some(Item::new().with("valid", true)))
        );
        assert_eq!(t.write_units, 2);
    }

    #[test]
    fn add_is_an_atomic_counter_starting_at_zero() {
        let mut t = Table::new(Capacity::OnDemand);
        assert_eq!(t.add(secs(0), Key::new("file", 1), "done", 1), Ok(1));
        assert_eq!(t.add(secs(0), Key::new("file", 1), "done", 1), Ok(2));
        assert_eq!(t.add(secs(0), Key::new("file", 1), "done", -2), Ok(0));
    }

    #[test]
    fn provisioned_capacity_throttles_past_its_burst() {
        // 1 write unit per second keeps 300 s of burst: 300 writes at once, the 301st refused
        // with a retry of one second, admitted then.
        let mut t = Table::new(Capacity::Provisioned { read: 1, write: 1 });
        for i in 0..300 {
            t.put(secs(0), Key::new("n", i), Item::new().with("n", i64::from(i)))
                .expect("the burst");
        }
        assert_eq!(
            t.put(secs(0), Key::new("x", 0), Item::new()),
            Err(DynamoError::ProvisionedThroughputExceeded { retry_after: secs(1) })
        );
        assert_eq!(t.put(secs(1), Key::new("x", 0), Item::new()), Ok(()));
        assert_eq!(t.throttled, 1);
    }

    #[test]
    fn emptied_partitions_are_kept_only_while_few() {
        // A claim per chunk comes and goes: 10,000 partitions made and emptied leave at most
        // twice the live ones (here none live but one) plus the slack of 64.
        let mut items = Items::default();
        items.insert(Key::new("file", 0), Item::new());
        for f in 0..10_000 {
            let k = Key::sorted("claim", f, 1);
            items.insert(k, Item::new().with("until", 5i64));
            assert!(items.get(k).is_some());
            items.remove(k);
            assert!(items.get(k).is_none());
            assert!(
                items.partitions.len() <= 2 + 65,
                "{} partitions",
                items.partitions.len()
            );
        }
        assert_eq!(items.len, 1);
        assert_eq!(items.scan("claim"), vec![]);
    }

    #[test]
    fn a_scan_reads_every_partition_of_a_name_in_key_order() {
        let mut t = Table::new(Capacity::OnDemand);
        for id in [10, 2, 1] {
            t.put(secs(0), Key::new("file", id), Item::new()).expect("put");
        }
        t.put(secs(0), Key::sorted("result", 1, 0), Item::new()).expect("put");
        let keys: Vec<String> = t
            .scan(secs(0), "file")
            .expect("scan")
            .into_iter()
            .map(|(k, _)| k.to_string())
            .collect();
        assert_eq!(keys, vec!["file#1", "file#2", "file#10"]);
        assert_eq!(t.read_units, 1);
    }
}
