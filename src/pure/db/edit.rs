//! The changes a write makes to a loaded `Db`: each checks the names it is
//! given, marks the records it touches (their properties are then sorted,
//! as SME sorts a record it rewrites) and marks the db changed.

use super::format::{check_key, check_prop_name};
use super::{Db, DbError, Entry, Record};

impl Db {
    /// Creates or replaces the whole record. A property named twice keeps
    /// the last value.
    pub fn set_record<I, N, V>(&mut self, key: &str, rtype: &str, props: I) -> Result<(), DbError>
    where
        I: IntoIterator<Item = (N, V)>,
        N: Into<String>,
        V: Into<String>,
    {
        self.check_key(key)?;
        let props = self.checked_props(props)?;
        let line = self.get(key).map_or(0, |r| r.line);
        let mut record = Record {
            key: key.to_string(),
            rtype: rtype.to_string(),
            props: Vec::new(),
            line,
        };
        for (name, value) in props {
            put(&mut record, name, value);
        }
        self.store(record);
        Ok(())
    }

    /// Creates the record if it is missing; else adds only the properties
    /// it does not have (its type and other values stay). Returns whether
    /// anything changed.
    pub fn set_default<I, N, V>(
        &mut self,
        key: &str,
        rtype: &str,
        props: I,
    ) -> Result<bool, DbError>
    where
        I: IntoIterator<Item = (N, V)>,
        N: Into<String>,
        V: Into<String>,
    {
        self.check_key(key)?;
        let props = self.checked_props(props)?;
        let Some(existing) = self.get(key) else {
            self.set_record(key, rtype, props)?;
            return Ok(true);
        };
        let mut record = existing.clone();
        let mut added = false;
        for (name, value) in props {
            if record.prop(&name).is_none() {
                record.props.push((name, value));
                added = true;
            }
        }
        if added {
            self.store(record);
        }
        Ok(added)
    }

    /// Changes the type of an existing record.
    pub fn set_type(&mut self, key: &str, rtype: &str) -> Result<(), DbError> {
        let mut record = self.existing(key)?.clone();
        record.rtype = rtype.to_string();
        self.store(record);
        Ok(())
    }

    /// Sets one property of an existing record.
    pub fn set_prop(&mut self, key: &str, name: &str, value: &str) -> Result<(), DbError> {
        self.check_prop_name(name)?;
        let mut record = self.existing(key)?.clone();
        put(&mut record, name.to_string(), value.to_string());
        self.store(record);
        Ok(())
    }

    /// Removes one property of an existing record; returns whether it was
    /// there (if not, nothing changes).
    pub fn del_prop(&mut self, key: &str, name: &str) -> Result<bool, DbError> {
        let mut record = self.existing(key)?.clone();
        let before = record.props.len();
        record.props.retain(|(n, _)| n != name);
        if record.props.len() == before {
            return Ok(false);
        }
        self.store(record);
        Ok(true)
    }

    /// Removes a record; returns whether it was there.
    pub fn delete(&mut self, key: &str) -> bool {
        let removed = self.entries.remove(key).is_some();
        self.changed |= removed;
        removed
    }

    fn existing(&self, key: &str) -> Result<&Record, DbError> {
        self.get(key).ok_or_else(|| DbError::NoRecord {
            path: self.path.clone(),
            key: key.to_string(),
        })
    }

    fn store(&mut self, mut record: Record) {
        record.props.sort_by(|a, b| a.0.cmp(&b.0));
        self.entries
            .insert(record.key.clone(), Entry { record, raw: None });
        self.changed = true;
    }

    fn check_key(&self, key: &str) -> Result<(), DbError> {
        check_key(key).map_err(|why| DbError::Invalid {
            path: self.path.clone(),
            why,
        })
    }

    fn check_prop_name(&self, name: &str) -> Result<(), DbError> {
        check_prop_name(name).map_err(|why| DbError::Invalid {
            path: self.path.clone(),
            why,
        })
    }

    /// All names checked before anything changes, so a bad one leaves the
    /// record as it was.
    fn checked_props<I, N, V>(&self, props: I) -> Result<Vec<(String, String)>, DbError>
    where
        I: IntoIterator<Item = (N, V)>,
        N: Into<String>,
        V: Into<String>,
    {
        let props: Vec<(String, String)> = props
            .into_iter()
            .map(|(n, v)| (n.into(), v.into()))
            .collect();
        for (name, _) in &props {
            self.check_prop_name(name)?;
        }
        Ok(props)
    }
}

fn put(record: &mut Record, name: String, value: String) {
    match record.props.iter_mut().find(|(n, _)| *n == name) {
        Some(slot) => slot.1 = value,
        None => record.props.push((name, value)),
    }
}
