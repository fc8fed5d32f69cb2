//! `PP2_TYPE_SSL`: the client's TLS connection as the sender terminated it, with the
//! sub-TLVs brokers read to authenticate a device by its certificate (HAProxy's
//! `send-proxy-v2-ssl-cn`).

/// `PP2_CLIENT_SSL`: the client connected over TLS.
pub const CLIENT_SSL: u8 = 0x01;
/// `PP2_CLIENT_CERT_CONN`: the client presented a certificate on this connection.
pub const CLIENT_CERT_CONN: u8 = 0x02;

const SUBTYPE_VERSION: u8 = 0x21;
const SUBTYPE_CN: u8 = 0x22;
const SUBTYPE_CIPHER: u8 = 0x23;

/// The value of a `PP2_TYPE_SSL` TLV.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ssl {
    /// [`CLIENT_SSL`], [`CLIENT_CERT_CONN`] …
    pub client: u8,
    /// Zero when the client presented a certificate and it was verified, non-zero otherwise.
    pub verify: u32,
    /// `PP2_SUBTYPE_SSL_VERSION`, such as `TLSv1.3`.
    pub version: Option<String>,
    /// `PP2_SUBTYPE_SSL_CIPHER`, such as `TLS_AES_128_GCM_SHA256`.
    pub cipher: Option<String>,
    /// `PP2_SUBTYPE_SSL_CN`: the common name of the client certificate's subject.
    pub cn: Option<String>,
}

impl Ssl {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut value = vec![self.client];
        value.extend_from_slice(&self.verify.to_be_bytes());
        let subs = [
            (SUBTYPE_VERSION, &self.version),
            (SUBTYPE_CIPHER, &self.cipher),
            (SUBTYPE_CN, &self.cn),
        ];
        for (kind, text) in subs {
            if let Some(text) = text {
                push_tlv(&mut value, kind, text.as_bytes());
            }
        }
        value
    }

    /// `None` when the value is not a well-formed SSL TLV.
    pub(crate) fn decode(value: &[u8]) -> Option<Ssl> {
        let (&client, rest) = value.split_first()?;
        let (verify, mut rest) = rest.split_first_chunk::<4>()?;
        let mut ssl = Ssl {
            client,
            verify: u32::from_be_bytes(*verify),
            ..Ssl::default()
        };
        while !rest.is_empty() {
            let (&[kind, high, low], tail) = rest.split_first_chunk::<3>()?;
            let len = usize::from(u16::from_be_bytes([high, low]));
            let text = tail.get(..len)?;
            rest = &tail[len..];
            let text = Some(std::str::from_utf8(text).ok()?.to_owned());
            match kind {
                SUBTYPE_VERSION => ssl.version = text,
                SUBTYPE_CIPHER => ssl.cipher = text,
                SUBTYPE_CN => ssl.cn = text,
                _ => {}
            }
        }
        Some(ssl)
    }
}

/// Appends a type-length-value entry; a value longer than 64 KiB is cut to fit the length.
fn push_tlv(out: &mut Vec<u8>, kind: u8, value: &[u8]) {
    let len = u16::try_from(value.len()).unwrap_or(u16::MAX);
    out.push(kind);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&value[..usize::from(len)]);
}
