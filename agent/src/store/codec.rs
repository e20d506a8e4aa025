//! The byte-level encoding of the store's records: LEB128 varints,
//! zigzag for signed numbers, length-prefixed strings. Nothing here knows
//! what a record means; `record.rs` does.

/// A record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("undecodable record: {0}")]
pub struct DecodeError(pub &'static str);

/// Appends encoded values to a buffer.
pub struct Enc<'a>(pub &'a mut Vec<u8>);

impl Enc<'_> {
    pub fn u8(&mut self, v: u8) {
        self.0.push(v);
    }

    pub fn var(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    pub fn int(&mut self, v: i64) {
        self.var(((v << 1) ^ (v >> 63)) as u64);
    }

    pub fn bool(&mut self, v: bool) {
        self.u8(u8::from(v));
    }

    pub fn bytes(&mut self, v: &[u8]) {
        self.var(v.len() as u64);
        self.0.extend_from_slice(v);
    }

    pub fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }

    pub fn pairs(&mut self, v: &[(String, String)]) {
        self.var(v.len() as u64);
        for (k, val) in v {
            self.str(k);
            self.str(val);
        }
    }
}

/// Reads encoded values from a slice, front to back.
pub struct Dec<'a>(pub &'a [u8]);

impl<'a> Dec<'a> {
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        let (&b, rest) = self.0.split_first().ok_or(DecodeError("truncated"))?;
        self.0 = rest;
        Ok(b)
    }

    pub fn var(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError("varint too long"))
    }

    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        u32::try_from(self.var()?).map_err(|_| DecodeError("u32 out of range"))
    }

    pub fn int(&mut self) -> Result<i64, DecodeError> {
        let v = self.var()?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    pub fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError("bad bool")),
        }
    }

    pub fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = usize::try_from(self.var()?).map_err(|_| DecodeError("length"))?;
        if n > self.0.len() {
            return Err(DecodeError("truncated"));
        }
        let (v, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(v)
    }

    pub fn str(&mut self) -> Result<String, DecodeError> {
        Ok(self.str_ref()?.to_string())
    }

    pub fn str_ref(&mut self) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| DecodeError("bad utf-8"))
    }

    pub fn pairs(&mut self) -> Result<Vec<(String, String)>, DecodeError> {
        let n = self.var()? as usize;
        let mut out = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            out.push((self.str()?, self.str()?));
        }
        Ok(out)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// CRC-32 (IEEE) of `bytes`.
pub fn crc(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn values_round_trip(u in any::<u64>(), i in any::<i64>(), s in ".{0,40}", b in any::<bool>()) {
            let mut buf = Vec::new();
            let mut e = Enc(&mut buf);
            e.var(u);
            e.int(i);
            e.str(&s);
            e.bool(b);
            let mut d = Dec(&buf);
            prop_assert_eq!(d.var().unwrap(), u);
            prop_assert_eq!(d.int().unwrap(), i);
            prop_assert_eq!(d.str().unwrap(), s);
            prop_assert_eq!(d.bool().unwrap(), b);
            prop_assert!(d.is_empty());
        }

        #[test]
        fn truncated_input_is_an_error_not_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut d = Dec(&bytes);
            while d.str().is_ok() {}
        }
    }
}
