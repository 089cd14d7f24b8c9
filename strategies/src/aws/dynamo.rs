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

use indexmap::IndexMap;
use serde_json::Value;
use simkit::quota::Quota;

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

/// A table's items by partition: the key up to and including its last `#` (`result#7#`), then
/// the rest (`3`), as DynamoDB keeps a partition key and a sort key. Partitions are few and
/// sorted (a query reads a range of them); within one the rest is hashed (one sorted map of
/// every key made each operation compare long common prefixes along a deep tree). A query sorts
/// what it reads, so no insertion order reaches output.
#[derive(Debug, Default)]
struct Items {
    partitions: std::collections::BTreeMap<String, IndexMap<String, Value>>,
    len: usize,
}

fn split_key(key: &str) -> (&str, &str) {
    match key.rfind('#') {
        Some(i) => key.split_at(i + 1),
        None => ("", key),
    }
}

impl Items {
    fn get(&self, key: &str) -> Option<&Value> {
        let (p, k) = split_key(key);
        self.partitions.get(p)?.get(k)
    }

    fn partition(&mut self, p: &str) -> &mut IndexMap<String, Value> {
        if !self.partitions.contains_key(p) {
            self.partitions.insert(p.to_owned(), IndexMap::new());
        }
        self.partitions.get_mut(p).expect("inserted above")
    }

    fn insert(&mut self, key: &str, item: Value) {
        let (p, k) = split_key(key);
        if self.partition(p).insert(k.to_owned(), item).is_none() {
            self.len += 1;
        }
    }

    /// The item at `key` as an object, created empty when absent (or not an object).
    fn object(&mut self, key: &str) -> &mut Value {
        let (p, k) = split_key(key);
        let part = self.partition(p);
        if !part.contains_key(k) {
            part.insert(k.to_owned(), Value::Object(serde_json::Map::new()));
            self.len += 1;
        }
        let item = self
            .partitions
            .get_mut(p)
            .and_then(|part| part.get_mut(k))
            .expect("inserted above");
        if !item.is_object() {
            *item = Value::Object(serde_json::Map::new());
        }
        item
    }

    fn remove(&mut self, key: &str) {
        let (p, k) = split_key(key);
        if let Some(part) = self.partitions.get_mut(p)
            && part.swap_remove(k).is_some()
        {
            self.len -= 1;
            if part.is_empty() {
                self.partitions.remove(p);
            }
        }
    }

    /// Every item whose key starts with `prefix`, in key order: the sort keys of the one
    /// partition `prefix` reaches into, and the partitions that start with `prefix`.
    fn query(&self, prefix: &str) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        let (p, rest) = split_key(prefix);
        if !rest.is_empty()
            && let Some(part) = self.partitions.get(p)
        {
            for (k, v) in part.iter().filter(|(k, _)| k.starts_with(rest)) {
                out.push((format!("{p}{k}"), v.clone()));
            }
        }
        let deeper = self
            .partitions
            .range::<str, _>((std::ops::Bound::Included(prefix), std::ops::Bound::Unbounded))
            .take_while(|(name, _)| name.starts_with(prefix));
        for (name, part) in deeper {
            for (k, v) in part {
                out.push((format!("{name}{k}"), v.clone()));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
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
    pub fn get(&mut self, now: Duration, key: &str) -> Result<Option<Value>, DynamoError> {
        Self::take(&mut self.reads, &mut self.throttled, now)?;
        self.read_units += 1;
        Ok(self.items.get(key).cloned())
    }

    /// `PutItem`, unconditional.
    pub fn put(&mut self, now: Duration, key: &str, item: Value) -> Result<(), DynamoError> {
        self.write_unit(now)?;
        self.items.insert(key, item);
        Ok(())
    }

    /// `PutItem` with `attribute_not_exists`: writes only a new item. A failed condition still
    /// consumes a write unit (DynamoDB bills it).
    pub fn put_if_absent(&mut self, now: Duration, key: &str, item: Value) -> Result<(), DynamoError> {
        self.write_unit(now)?;
        if self.items.get(key).is_some() {
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
        key: &str,
        item: Value,
        blocks: impl FnOnce(&Value) -> bool,
    ) -> Result<(), DynamoError> {
        self.write_unit(now)?;
        if self.items.get(key).is_some_and(blocks) {
            return Err(DynamoError::ConditionalCheckFailed);
        }
        self.items.insert(key, item);
        Ok(())
    }

    /// `UpdateItem … SET attr = value`, creating the item when absent.
    pub fn set(&mut self, now: Duration, key: &str, attr: &str, value: Value) -> Result<(), DynamoError> {
        self.write_unit(now)?;
        self.items.object(key)[attr] = value;
        Ok(())
    }

    /// `Query` of the items whose key starts with `prefix`, in key order. It consumes a read
    /// unit per 4 KB read, rounded up ("Read consumption for Query"); these items are about
    /// 100 bytes, so one unit per 40 items, at least one.
    pub fn query(&mut self, now: Duration, prefix: &str) -> Result<Vec<(String, Value)>, DynamoError> {
        Self::take(&mut self.reads, &mut self.throttled, now)?;
        let out = self.items.query(prefix);
        self.read_units += (out.len() as u64).div_ceil(40).max(1);
        Ok(out)
    }

    /// `UpdateItem … ADD attr n`, returning the new value.
    pub fn add(&mut self, now: Duration, key: &str, attr: &str, n: i64) -> Result<i64, DynamoError> {
        self.write_unit(now)?;
        let slot = &mut self.items.object(key)[attr];
        let new = slot.as_i64().unwrap_or(0) + n;
        *slot = Value::from(new);
        Ok(new)
    }

    /// `DeleteItem`.
    pub fn delete(&mut self, now: Duration, key: &str) -> Result<(), DynamoError> {
        self.write_unit(now)?;
        self.items.remove(key);
        Ok(())
    }

    /// `DeleteItem` with a condition on the item (`#attr = :value`, say): deletes only an item
    /// for which `holds` is true; otherwise `ConditionalCheckFailed` (an absent item fails too).
    /// A failed condition still consumes a write unit.
    pub fn delete_if(
        &mut self,
        now: Duration,
        key: &str,
        holds: impl FnOnce(&Value) -> bool,
    ) -> Result<(), DynamoError> {
        self.write_unit(now)?;
        if !self.items.get(key).is_some_and(holds) {
            return Err(DynamoError::ConditionalCheckFailed);
        }
        self.items.remove(key);
        Ok(())
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
    use serde_json::json;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_conditional_put_writes_once_and_bills_the_refusal() {
        let mut t = Table::new(Capacity::OnDemand);
        assert_eq!(
            t.put_if_absent(secs(0), "file-1#3", json!({"verdict": "valid"})),
            Ok(())
        );
        assert_eq!(
            t.put_if_absent(secs(0), "file-1#3", json!({"verdict": "invalid"})),
            Err(DynamoError::ConditionalCheckFailed)
        );
        assert_eq!(t.get(secs(0), "file-1#3"), Ok(Some(json!({"verdict": "valid"}))));
        assert_eq!(t.write_units, 2);
    }

    #[test]
    fn add_is_an_atomic_counter_starting_at_zero() {
        let mut t = Table::new(Capacity::OnDemand);
        assert_eq!(t.add(secs(0), "file-1", "done", 1), Ok(1));
        assert_eq!(t.add(secs(0), "file-1", "done", 1), Ok(2));
        assert_eq!(t.add(secs(0), "file-1", "done", -2), Ok(0));
    }

    #[test]
    fn provisioned_capacity_throttles_past_its_burst() {
        // 1 write unit per second keeps 300 s of burst: 300 writes at once, the 301st refused
        // with a retry of one second, admitted then.
        let mut t = Table::new(Capacity::Provisioned { read: 1, write: 1 });
        for i in 0..300 {
            t.put(secs(0), &i.to_string(), json!(i)).expect("the burst");
        }
        assert_eq!(
            t.put(secs(0), "x", json!(0)),
            Err(DynamoError::ProvisionedThroughputExceeded { retry_after: secs(1) })
        );
        assert_eq!(t.put(secs(1), "x", json!(0)), Ok(()));
        assert_eq!(t.throttled, 1);
    }
}
