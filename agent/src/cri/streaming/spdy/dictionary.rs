//! The zlib dictionary of SPDY/3 header blocks (the SPDY Protocol, Draft 3,
//! section 2.6.10.1): both sides of a connection prime their header
//! compression with it.

/// The dictionary, 1423 bytes.
pub const DICTIONARY: &[u8] = b"\
    \x00\x00\x00\x07options\x00\x00\x00\x04head\x00\x00\x00\x04post\x00\x00\x00\
    \x03put\x00\x00\x00\x06delete\x00\x00\x00\x05trace\x00\x00\x00\x06accept\x00\
    \x00\x00\x0eaccept-charset\x00\x00\x00\x0faccept-encoding\x00\x00\x00\x0f\
    accept-language\x00\x00\x00\x0daccept-ranges\x00\x00\x00\x03age\x00\x00\x00\
    \x05allow\x00\x00\x00\x0dauthorization\x00\x00\x00\x0dcache-control\x00\x00\
    \x00\x0aconnection\x00\x00\x00\x0ccontent-base\x00\x00\x00\x10content-enc\
    oding\x00\x00\x00\x10content-language\x00\x00\x00\x0econtent-length\x00\x00\
    \x00\x10content-location\x00\x00\x00\x0bcontent-md5\x00\x00\x00\x0dconten\
    t-range\x00\x00\x00\x0ccontent-type\x00\x00\x00\x04date\x00\x00\x00\x04et\
    ag\x00\x00\x00\x06expect\x00\x00\x00\x07expires\x00\x00\x00\x04from\x00\x00\
    \x00\x04host\x00\x00\x00\x08if-match\x00\x00\x00\x11if-modified-since\x00\
    \x00\x00\x0dif-none-match\x00\x00\x00\x08if-range\x00\x00\x00\x13if-unmod\
    ified-since\x00\x00\x00\x0dlast-modified\x00\x00\x00\x08location\x00\x00\x00\
    \x0cmax-forwards\x00\x00\x00\x06pragma\x00\x00\x00\x12proxy-authenticate\x00\
    \x00\x00\x13proxy-authorization\x00\x00\x00\x05range\x00\x00\x00\x07refer\
    er\x00\x00\x00\x0bretry-after\x00\x00\x00\x06server\x00\x00\x00\x02te\x00\
    \x00\x00\x07trailer\x00\x00\x00\x11transfer-encoding\x00\x00\x00\x07upgra\
    de\x00\x00\x00\x0auser-agent\x00\x00\x00\x04vary\x00\x00\x00\x03via\x00\x00\
    \x00\x07warning\x00\x00\x00\x10www-authenticate\x00\x00\x00\x06method\x00\
    \x00\x00\x03get\x00\x00\x00\x06status\x00\x00\x00\x06200\x20OK\x00\x00\x00\
    \x07version\x00\x00\x00\x08HTTP/1.1\x00\x00\x00\x03url\x00\x00\x00\x06pub\
    lic\x00\x00\x00\x0aset-cookie\x00\x00\x00\x0akeep-alive\x00\x00\x00\x06or\
    igin100101201202205206300302303304305306307402405406407408409410411412413\
    414415416417502504505203\x20Non-Authoritative\x20Information204\x20No\x20\
    Content301\x20Moved\x20Permanently400\x20Bad\x20Request401\x20Unauthorize\
    d403\x20Forbidden404\x20Not\x20Found500\x20Internal\x20Server\x20Error501\
    \x20Not\x20Implemented503\x20Service\x20UnavailableJan\x20Feb\x20Mar\x20A\
    pr\x20May\x20Jun\x20Jul\x20Aug\x20Sept\x20Oct\x20Nov\x20Dec\x2000:00:00\x20\
    Mon,\x20Tue,\x20Wed,\x20Thu,\x20Fri,\x20Sat,\x20Sun,\x20GMTchunked,text/h\
    tml,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,t\
    ext/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=u\
    tf-8charset=iso-8859-1,utf-,*,enq=0.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_is_the_specs() {
        assert_eq!(DICTIONARY.len(), 1423);
        // The dictionary id a compressed block's zlib header names.
        assert_eq!(adler32(DICTIONARY), 0xe3c6_a7c2);
        assert!(DICTIONARY.starts_with(b"\0\0\0\x07options"));
        assert!(DICTIONARY.ends_with(b"utf-,*,enq=0."));
    }

    fn adler32(data: &[u8]) -> u32 {
        let (mut a, mut b) = (1u32, 0u32);
        for &x in data {
            a = (a + u32::from(x)) % 65521;
            b = (b + a) % 65521;
        }
        (b << 16) | a
    }
}
