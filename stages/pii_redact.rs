//! `pii_redact`: replace personal identifiers common on the Chinese web with typed
//! placeholders, validating checksums so ordinary numbers survive.
//!
//! Web pages are full of long numbers: order ids, timestamps, tracking codes, prices. A
//! digit-count regex would wipe them; so every numeric type is validated:
//!
//! | type | placeholder | rule |
//! |---|---|---|
//! | mainland resident ID | `<ID_CARD>` | 18 chars: region digit 1–8, valid birth date 1900–2099, GB 11643 ISO 7064 mod 11-2 check digit (0–9/X); or the old 15-digit form: known province code + valid YYMMDD |
//! | mobile | `<PHONE>` | `1[3-9]` + 9 digits, optional `+86`/`86`, optional `-`/space groups 3-4-4 |
//! | landline | `<PHONE>` | area code `0xx`/`0xxx` in brackets or followed by `-`, then 7–8 digits, optional extension |
//! | bank card | `<BANK_CARD>` | 16–19 digits (or 4-4-4-4[-n] groups), first digit 3–6, Luhn valid |
//! | email | `<EMAIL>` | `local@domain.tld` |
//! | IP | `<IP>` | IPv4 dotted quad (each part ≤ 255) or IPv6 accepted by `std::net::Ipv6Addr` |
//! | QQ | `<QQ>` | 5–11 digits right after a label: `QQ`, `扣扣`, `企鹅号`, optionally `号`/`：` |
//! | WeChat | `<WECHAT>` | 6–20 char id (letter first) right after `微信`, `WeChat`, `VX`, `wx`, … |
//!
//! A number glued to other digits or letters is never a match (boundaries are checked on
//! both sides), so a phone-shaped slice of an order id stays. Where detectors overlap, the
//! earlier then longer span wins; labelled QQ/WeChat beat bare numbers.
//!
//! Reads `text`. Writes `text` (only when something was redacted; `words`/`tokens` are
//! then dropped), `attrs["pii_redact.<type>"]` per type found (`id_card`, `phone`,
//! `bank_card`, `email`, `ip`, `qq`, `wechat`) and `attrs["pii_redact.total"]`. Never rejects.
//! Memory: the matches of one document.
//!
//! ```yaml
//! pii:
//!   kind: pii_redact
//!   inputs: [quality]
//!   types: [id_card, phone, bank_card, email, ip, qq, wechat]   # default: all
//! ```

use std::collections::BTreeSet;
use std::sync::Arc;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::attrs::AttrDecl;
use crate::document::DocBatch;
use crate::error::{Error, Result};
use crate::stage::{
    field_problem, parse_config, BuildCtx, Emitter, Kind, Node, Role, StageConfig, Transform,
    OUT_REJECTED,
};

/// A PII type.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Deserialize,
    Serialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum PiiType {
    /// Mainland resident identity card number.
    IdCard,
    /// Mobile or landline phone number.
    Phone,
    /// Bank card number.
    BankCard,
    /// Email address.
    Email,
    /// IPv4 or IPv6 address.
    Ip,
    /// Labelled QQ number.
    Qq,
    /// Labelled WeChat id.
    Wechat,
}

impl PiiType {
    /// All types.
    pub const ALL: [PiiType; 7] = [
        PiiType::IdCard,
        PiiType::Phone,
        PiiType::BankCard,
        PiiType::Email,
        PiiType::Ip,
        PiiType::Qq,
        PiiType::Wechat,
    ];
    /// The placeholder written in place of a match.
    pub fn placeholder(self) -> &'static str {
        match self {
            PiiType::IdCard => "<ID_CARD>",
            PiiType::Phone => "<PHONE>",
            PiiType::BankCard => "<BANK_CARD>",
            PiiType::Email => "<EMAIL>",
            PiiType::Ip => "<IP>",
            PiiType::Qq => "<QQ>",
            PiiType::Wechat => "<WECHAT>",
        }
    }
    /// Attribute suffix.
    pub fn name(self) -> &'static str {
        match self {
            PiiType::IdCard => "id_card",
            PiiType::Phone => "phone",
            PiiType::BankCard => "bank_card",
            PiiType::Email => "email",
            PiiType::Ip => "ip",
            PiiType::Qq => "qq",
            PiiType::Wechat => "wechat",
        }
    }
    /// Tie-break priority between overlapping spans with the same start (higher wins).
    fn priority(self) -> u8 {
        match self {
            PiiType::Qq | PiiType::Wechat => 5,
            PiiType::Email => 4,
            PiiType::IdCard => 3,
            PiiType::BankCard => 2,
            PiiType::Phone => 1,
            PiiType::Ip => 0,
        }
    }
}

/// Config for `pii_redact`.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Types to redact. Default: all (`id_card`, `phone`, `bank_card`, `email`, `ip`, `qq`, `wechat`).
    #[serde(default = "all_types")]
    pub types: Vec<PiiType>,
}

fn all_types() -> Vec<PiiType> {
    PiiType::ALL.to_vec()
}

impl Default for Config {
    fn default() -> Self {
        Config { types: all_types() }
    }
}

impl StageConfig for Config {
    fn validate(&self, _ctx: &BuildCtx) -> Vec<String> {
        if self.types.is_empty() {
            vec![field_problem(
                "types",
                "must not be empty (remove the node instead)",
            )]
        } else {
            Vec::new()
        }
    }
}

/// GB 11643-1999 check for an 18-character resident ID (17 digits + check char).
pub fn id18_valid(s: &str) -> bool {
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const M: &[u8; 11] = b"10X98765432";
    let b = s.as_bytes();
    if b.len() != 18 || !b[..17].iter().all(u8::is_ascii_digit) {
        return false;
    }
    if !(b'1'..=b'8').contains(&b[0]) {
        return false;
    }
    let year = num(&b[6..10]);
    if !(1900..=2099).contains(&year) || !valid_md(num(&b[10..12]), num(&b[12..14])) {
        return false;
    }
    let sum: u32 = b[..17]
        .iter()
        .zip(W)
        .map(|(d, w)| (d - b'0') as u32 * w)
        .sum();
    M[(sum % 11) as usize] == b[17].to_ascii_uppercase()
}

/// Old 15-digit resident ID: province code + YYMMDD birth date (no check digit exists).
pub fn id15_valid(s: &str) -> bool {
    const PROVINCES: [u32; 34] = [
        11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46, 50, 51,
        52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82,
    ];
    let b = s.as_bytes();
    b.len() == 15
        && b.iter().all(u8::is_ascii_digit)
        && PROVINCES.contains(&num(&b[0..2]))
        && valid_md(num(&b[8..10]), num(&b[10..12]))
}

fn num(b: &[u8]) -> u32 {
    b.iter().fold(0, |a, d| a * 10 + (d - b'0') as u32)
}

fn valid_md(m: u32, d: u32) -> bool {
    let max = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 => 29,
        _ => return false,
    };
    (1..=max).contains(&d)
}

/// Luhn check over a string of digits.
pub fn luhn_valid(digits: &str) -> bool {
    let mut sum = 0u32;
    for (i, c) in digits.bytes().rev().enumerate() {
        if !c.is_ascii_digit() {
            return false;
        }
        let mut d = (c - b'0') as u32;
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    !digits.is_empty() && sum % 10 == 0
}

/// A bank card: 16–19 digits, first digit 3–6 (Amex/JCB, Visa, Mastercard, UnionPay), Luhn.
pub fn bank_card_valid(digits: &str) -> bool {
    (16..=19).contains(&digits.len())
        && matches!(digits.as_bytes()[0], b'3'..=b'6')
        && luhn_valid(digits)
}

/// A found span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Byte start.
    pub start: usize,
    /// Byte end.
    pub end: usize,
    /// Type.
    pub kind: PiiType,
}

/// Compiled detectors.
pub struct Detector {
    types: BTreeSet<PiiType>,
    digits: Regex,
    mobile: Regex,
    landline: Regex,
    card_groups: Regex,
    email: Regex,
    ipv4: Regex,
    ipv6: Regex,
    qq: Regex,
    wechat: Regex,
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

impl Detector {
    /// Compile the detectors for the given types.
    pub fn new(types: &[PiiType]) -> Result<Self> {
        let re = |p: &str| Regex::new(p).map_err(|e| Error::msg(format!("pii regex: {e}")));
        Ok(Detector {
            types: types.iter().copied().collect(),
            digits: re(r"[0-9]+[Xx]?")?,
            mobile: re(r"(?:\+?86[- ]?)?1[3-9][0-9](?:[- ]?[0-9]{4}){2}")?,
            landline: re(
                r"(?:\(0[0-9]{2,3}\)|（0[0-9]{2,3}）|0[0-9]{2,3}-)[0-9]{7,8}(?:-[0-9]{1,5})?",
            )?,
            card_groups: re(r"[0-9]{4}(?:[ -][0-9]{4}){3}(?:[ -][0-9]{1,3})?")?,
            email: re(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}")?,
            ipv4: re(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")?,
            ipv6: re(r"[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}")?,
            qq: re(r"(?i:qq|ＱＱ|扣扣|企鹅)(?:号码|号)?\s*[:：]?\s*([1-9][0-9]{4,10})")?,
            wechat: re(
                r"(?:微信|(?i:wechat|weixin|vx|wx)|V信|威信)(?:号)?\s*[:：]?\s*([A-Za-z][-_A-Za-z0-9]{5,19})",
            )?,
        })
    }

    fn on(&self, t: PiiType) -> bool {
        self.types.contains(&t)
    }

    /// Every PII span in `text`, non-overlapping, in order.
    pub fn find(&self, text: &str) -> Vec<Span> {
        let b = text.as_bytes();
        // Standalone: not glued to ASCII letters/digits on either side.
        let free = |s: usize, e: usize| {
            (s == 0 || !is_word_byte(b[s - 1])) && (e == b.len() || !is_word_byte(b[e]))
        };
        let mut spans: Vec<Span> = Vec::new();
        let mut push = |start, end, kind| spans.push(Span { start, end, kind });
        let has_digit = b.iter().any(u8::is_ascii_digit);

        if has_digit && (self.on(PiiType::IdCard) || self.on(PiiType::BankCard)) {
            for m in self.digits.find_iter(text) {
                let (s, e, d) = (m.start(), m.end(), m.as_str());
                if !free(s, e) {
                    continue;
                }
                if self.on(PiiType::IdCard) && (id18_valid(d) || id15_valid(d)) {
                    push(s, e, PiiType::IdCard);
                } else if self.on(PiiType::BankCard) && bank_card_valid(d) {
                    push(s, e, PiiType::BankCard);
                }
            }
            if self.on(PiiType::BankCard) {
                for m in self.card_groups.find_iter(text) {
                    let d: String = m.as_str().chars().filter(char::is_ascii_digit).collect();
                    if free(m.start(), m.end()) && bank_card_valid(&d) {
                        push(m.start(), m.end(), PiiType::BankCard);
                    }
                }
            }
        }
        if has_digit && self.on(PiiType::Phone) {
            for m in self
                .mobile
                .find_iter(text)
                .chain(self.landline.find_iter(text))
            {
                // A leading bracket is its own boundary.
                let s = m.start();
                let ok_start = s == 0 || !is_word_byte(b[s - 1]) || !b[s].is_ascii_digit();
                if ok_start && (m.end() == b.len() || !is_word_byte(b[m.end()])) {
                    push(s, m.end(), PiiType::Phone);
                }
            }
        }
        if self.on(PiiType::Email) && text.contains('@') {
            for m in self.email.find_iter(text) {
                push(m.start(), m.end(), PiiType::Email);
            }
        }
        if self.on(PiiType::Ip) {
            if has_digit && text.contains('.') {
                for m in self.ipv4.find_iter(text) {
                    let (s, e) = (m.start(), m.end());
                    let parts_ok = m
                        .as_str()
                        .split('.')
                        .all(|p| p.parse::<u16>().is_ok_and(|v| v <= 255));
                    let before_ok = s == 0 || !(is_word_byte(b[s - 1]) || b[s - 1] == b'.');
                    let after_ok = e == b.len()
                        || !(is_word_byte(b[e])
                            || (b[e] == b'.' && b.get(e + 1).is_some_and(u8::is_ascii_digit)));
                    if parts_ok && before_ok && after_ok {
                        push(s, e, PiiType::Ip);
                    }
                }
            }
            if text.contains("::") || text.matches(':').count() >= 7 {
                for m in self.ipv6.find_iter(text) {
                    let (s, e) = (m.start(), m.end());
                    let cand = m.as_str();
                    let boundary = (s == 0 || !is_word_byte(b[s - 1]))
                        && (e == b.len() || !is_word_byte(b[e]));
                    if boundary
                        && cand.bytes().any(|c| c.is_ascii_hexdigit())
                        && cand.parse::<std::net::Ipv6Addr>().is_ok()
                    {
                        push(s, e, PiiType::Ip);
                    }
                }
            }
        }
        if self.on(PiiType::Qq) {
            for c in self.qq.captures_iter(text) {
                if let Some(g) = c.get(1) {
                    if g.end() == b.len() || !is_word_byte(b[g.end()]) {
                        push(g.start(), g.end(), PiiType::Qq);
                    }
                }
            }
        }
        if self.on(PiiType::Wechat) {
            for c in self.wechat.captures_iter(text) {
                let label_start = c.get(0).map_or(0, |m| m.start());
                let label_free = label_start == 0 || !b[label_start - 1].is_ascii_alphanumeric();
                if let Some(g) = c.get(1) {
                    if label_free && (g.end() == b.len() || !is_word_byte(b[g.end()])) {
                        push(g.start(), g.end(), PiiType::Wechat);
                    }
                }
            }
        }
        // Resolve overlaps: earliest start, then longest, then priority.
        spans.sort_by(|a, b| {
            a.start
                .cmp(&b.start)
                .then(b.end.cmp(&a.end))
                .then(b.kind.priority().cmp(&a.kind.priority()))
        });
        let mut out: Vec<Span> = Vec::with_capacity(spans.len());
        for s in spans {
            match out.last() {
                Some(l) if s.start < l.end => {
                    // Overlap: a labelled id covering the same start replaces a bare number.
                    if s.start == l.start && s.kind.priority() > l.kind.priority() && s.end >= l.end
                    {
                        if let Some(last) = out.last_mut() {
                            *last = s;
                        }
                    }
                }
                _ => out.push(s),
            }
        }
        out
    }

    /// Redact a text: the new text (None when nothing matched) and per-type counts.
    pub fn redact(&self, text: &str) -> (Option<String>, [usize; 7]) {
        let spans = self.find(text);
        let mut counts = [0usize; 7];
        if spans.is_empty() {
            return (None, counts);
        }
        let mut out = String::with_capacity(text.len());
        let mut pos = 0;
        for s in &spans {
            out.push_str(&text[pos..s.start]);
            out.push_str(s.kind.placeholder());
            pos = s.end;
            counts[PiiType::ALL.iter().position(|t| *t == s.kind).unwrap_or(0)] += 1;
        }
        out.push_str(&text[pos..]);
        (Some(out), counts)
    }
}

/// The `pii_redact` transform.
pub struct PiiRedact {
    det: Detector,
}

impl PiiRedact {
    /// Build from a config.
    pub fn new(cfg: Config) -> Result<Self> {
        Ok(PiiRedact {
            det: Detector::new(&cfg.types)?,
        })
    }
}

impl Transform for PiiRedact {
    fn attrs(&self) -> Vec<AttrDecl> {
        PiiType::ALL
            .iter()
            .map(|t| AttrDecl::int(format!("pii_redact.{}", t.name())))
            .chain([AttrDecl::int("pii_redact.total")])
            .collect()
    }

    fn process(&self, batch: DocBatch, out: &mut Emitter) -> Result<()> {
        for mut doc in batch.docs {
            let (new, counts) = self.det.redact(&doc.text);
            let mut total = 0;
            for (t, n) in PiiType::ALL.iter().zip(counts) {
                if n > 0 {
                    doc.attrs
                        .insert(format!("pii_redact.{}", t.name()), n as f64);
                    total += n;
                }
            }
            doc.attrs.insert("pii_redact.total".into(), total as f64);
            if let Some(t) = new {
                doc.set_text(t);
            }
            out.emit(doc);
        }
        Ok(())
    }
}

/// Registry entry.
pub fn kind() -> Kind {
    Kind {
        name: "pii_redact",
        doc: "Redact Chinese PII (resident IDs, phones, bank cards, emails, IPs, QQ/WeChat) with typed placeholders; checksums keep ordinary numbers.",
        role: Role::Transform,
        ports: OUT_REJECTED,
        schema: || schemars::schema_for!(Config),
        build: |params, ctx| {
            let cfg: Config = parse_config(params, ctx)?;
            Ok(Node::Transform(Arc::new(PiiRedact::new(cfg)?)))
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::run_transform;

    fn red(t: &str) -> String {
        Detector::new(&PiiType::ALL)
            .unwrap()
            .redact(t)
            .0
            .unwrap_or_else(|| t.to_string())
    }

    #[test]
    fn id_cards() {
        assert!(id18_valid("11010519491231002X"));
        assert!(id18_valid("11010519491231002x"));
        assert!(!id18_valid("110105194912310021")); // wrong check digit
        assert!(!id18_valid("110105194913310020")); // month 13
        assert!(id15_valid("110105491231002"));
        assert!(!id15_valid("990105491231002")); // no province 99
        assert_eq!(
            red("我的身份证号是11010519491231002X，请核对。"),
            "我的身份证号是<ID_CARD>，请核对。"
        );
        assert_eq!(red("老身份证：110105491231002。"), "老身份证：<ID_CARD>。");
        // Near miss: an 18-digit order number failing the check digit stays.
        assert_eq!(
            red("订单号110105194912310021已发货"),
            "订单号110105194912310021已发货"
        );
    }

    #[test]
    fn phones() {
        assert_eq!(
            red("联系电话：13800138000，欢迎来电"),
            "联系电话：<PHONE>，欢迎来电"
        );
        assert_eq!(
            red("手机 +86 138-0013-8000 或 86 13912345678"),
            "手机 <PHONE> 或 <PHONE>"
        );
        assert_eq!(
            red("请拨打021-56692669或(010)12345678转人工"),
            "请拨打<PHONE>或<PHONE>转人工"
        );
        assert_eq!(red("座机（0755）8765432-801"), "座机<PHONE>");
        // Near misses: a 13-digit millisecond timestamp, an 11-digit number starting 12,
        // and a phone-shaped slice inside an order id.
        for t in [
            "时间戳1597026000123已记录",
            "编号12345678901无效",
            "订单号20200808138001380001",
        ] {
            assert_eq!(red(t), t);
        }
    }

    #[test]
    fn bank_cards() {
        assert!(luhn_valid("6222021234567894"));
        assert!(!luhn_valid("6222021234567890"));
        assert_eq!(
            red("工行卡号6222021234567894，户名张三"),
            "工行卡号<BANK_CARD>，户名张三"
        );
        assert_eq!(red("卡号：6217 0028 7001 2345 672"), "卡号：<BANK_CARD>");
        assert_eq!(
            red("Visa 4111-1111-1111-1111 到期"),
            "Visa <BANK_CARD> 到期"
        );
        // Near misses: Luhn fails; Luhn passes but starts with 2 (a date-like order id).
        for t in ["卡号6222021234567890错误", "订单2020080816541738已完成"] {
            assert_eq!(red(t), t);
        }
    }

    #[test]
    fn emails_and_ips() {
        assert_eq!(red("邮箱：zhang.san@example.com.cn。"), "邮箱：<EMAIL>。");
        assert_eq!(red("QQ邮箱13800138000@qq.com"), "QQ邮箱<EMAIL>");
        assert_eq!(
            red("服务器IP为192.168.1.10，端口8080"),
            "服务器IP为<IP>，端口8080"
        );
        assert_eq!(
            red("IPv6地址2001:db8::8a2e:370:7334可用，还有::1"),
            "IPv6地址<IP>可用，还有<IP>"
        );
        // Near misses: a version number, an out-of-range quad, a time of day.
        for t in [
            "版本1.2.3.4.5发布",
            "编号300.1.2.3",
            "会议时间12:30:45开始",
            "比分3:1",
        ] {
            assert_eq!(red(t), t);
        }
    }

    #[test]
    fn labelled_qq_and_wechat() {
        assert_eq!(red("加QQ：215138693咨询"), "加QQ：<QQ>咨询");
        assert_eq!(red("记住QQ215138693"), "记住QQ<QQ>");
        assert_eq!(red("扣扣号 12345678"), "扣扣号 <QQ>");
        assert_eq!(
            red("微信：zhangsan_2020，备注来意"),
            "微信：<WECHAT>，备注来意"
        );
        assert_eq!(red("加VX: abc123456 领取"), "加VX: <WECHAT> 领取");
        // Near misses: an unlabelled 9-digit number; "微信" followed by ordinary Chinese.
        for t in ["共有215138693人", "微信支付已经普及"] {
            assert_eq!(red(t), t);
        }
    }

    #[test]
    fn stage_counts_per_type() {
        let f = PiiRedact::new(Config::default()).unwrap();
        let texts = [
            "电话13800138000，邮箱a@b.cn，电话13912345678",
            "没有个人信息的句子。",
        ];
        for bs in [1, 3, 1000] {
            let (out, rej) = run_transform(&f, &texts, bs);
            assert!(rej.is_empty());
            assert_eq!(out[0].text, "电话<PHONE>，邮箱<EMAIL>，电话<PHONE>");
            assert_eq!(out[0].attrs["pii_redact.phone"], 2.0);
            assert_eq!(out[0].attrs["pii_redact.email"], 1.0);
            assert_eq!(out[0].attrs["pii_redact.total"], 3.0);
            assert_eq!(out[1].attrs["pii_redact.total"], 0.0);
            assert!(!out[1].attrs.contains_key("pii_redact.phone"));
        }
        let only = PiiRedact::new(Config {
            types: vec![PiiType::Email],
        })
        .unwrap();
        let (out, _) = run_transform(&only, &texts[..1], 1);
        assert_eq!(out[0].text, "电话13800138000，邮箱<EMAIL>，电话13912345678");
    }
}
