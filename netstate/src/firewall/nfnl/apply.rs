//! Restore: the saved tables replayed in one nf_tables transaction, and its undo.
//!
//! Per saved table: a live table equal to it (in normal form, counters aside) is left alone;
//! otherwise the transaction deletes the live one, if any, and adds the saved one, so the
//! kernel commits every table or none. The undo is a transaction too: it deletes the tables
//! that did not exist and puts back, with their counters, those that were replaced.

use crhook_proto::NftTable;

use super::norm::{self, normalize};
use super::{
    dump, msg_type, table_label, Obj, BATCH_BEGIN, BATCH_END, NFT_MSG_DELTABLE, NFT_MSG_GETGEN,
    SUBSYS,
};
use crate::error::{NetstateError, Result};
use crate::firewall::nftx::TableId;
use crate::firewall::Go;
use crate::netns::NetNs;
use crate::nl::{NlError, Req};

const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NFTA_SET_ID: u16 = 10;

/// One message of a transaction: type, flags, payload, and what it is for errors.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct Msg {
    pub ty: u16,
    pub flags: u16,
    pub payload: Vec<u8>,
    pub what: String,
}

/// One message of a transaction that replays saved tables: the saved payload borrowed, what
/// is appended to it, and what it is for errors, told only when the kernel refuses it. None
/// is kept: the transaction walks the saved tables twice (to size the batch and to fill it),
/// and a copy and a text per rule took ~36 MiB at 55,000 rules, a list of them ~9 MiB.
#[derive(Debug)]
pub(super) struct Out<'a> {
    ty: u16,
    flags: u16,
    payload: &'a [u8],
    extra: Vec<u8>,
    what: What<'a>,
}

#[derive(Debug)]
enum What<'a> {
    Text(&'a str),
    /// the `i`th object of its kind in `table`
    Saved {
        obj: Obj,
        i: usize,
        table: &'a NftTable,
    },
}

impl Out<'_> {
    fn what(&self) -> String {
        match &self.what {
            What::Text(t) => t.to_string(),
            What::Saved { obj, i, table } => {
                describe(*obj, &obj.of(table)[*i], *i, &table_label(table))
            }
        }
    }

    /// The message as the journal keeps it.
    fn to_msg(&self) -> Msg {
        Msg {
            ty: self.ty,
            flags: self.flags,
            payload: [self.payload, &self.extra].concat(),
            what: self.what(),
        }
    }
}

impl Msg {
    fn out(&self) -> Out<'_> {
        Out {
            ty: self.ty,
            flags: self.flags,
            payload: &self.payload,
            extra: Vec::new(),
            what: What::Text(&self.what),
        }
    }
}

/// What a step's transaction sends, in order: a message, or every message that rebuilds a
/// saved table.
#[derive(Debug)]
enum Piece<'a> {
    Msg(Msg),
    Table(&'a NftTable),
}

/// Calls `f` with each message of `pieces`, in order.
fn walk<'a>(pieces: &'a [Piece<'a>], f: &mut dyn FnMut(Out<'a>)) {
    for p in pieces {
        match p {
            Piece::Msg(m) => f(m.out()),
            Piece::Table(t) => replay(t, f),
        }
    }
}

/// A transaction that replays saved tables, with the one that undoes it.
#[derive(Debug)]
pub(crate) struct NfnlStep<'a> {
    pieces: Vec<Piece<'a>>,
    undo: Vec<Msg>,
}

/// What restoring the saved tables would do.
#[derive(Debug, Default)]
pub(crate) struct NfnlPlan<'a> {
    pub step: Option<NfnlStep<'a>>,
    pub conflicts: Vec<String>,
    /// (family, name) of every table the step adds or replaces
    pub touched: Vec<(String, String)>,
}

/// Plans restoring `saved` into `ns`. `keep` says which live tables are nf_tables state
/// crhook owns here (the others, e.g. iptables-nft's under a `CR_IPTABLES` command, are
/// neither compared nor reported); live tables it keeps that the image lacks are conflicts.
pub(crate) fn plan<'a>(
    ns: &NetNs,
    saved: &[&'a NftTable],
    keep: &dyn Fn(&TableId) -> bool,
) -> Result<NfnlPlan<'a>> {
    let live = dump::capture(ns, true, keep)?;
    let mut out = NfnlPlan::default();
    let mut pieces = Vec::new();
    let mut undo = Vec::new();
    for &s in saved {
        let label = table_label(s);
        let l = live
            .iter()
            .find(|l| l.family == s.family && l.name == s.name);
        match l {
            Some(l) if same(s, l).map_err(|e| invalid(&label, e))? => continue,
            Some(l) => {
                if !is_empty(l) {
                    out.conflicts.push(format!(
                        "nftables: live table {label} differs from the saved one"
                    ));
                }
                pieces.push(Piece::Msg(delete(l)));
                undo.extend(declare_delete(l));
                replay(l, &mut |o| undo.push(o.to_msg()));
            }
            None => undo.extend(declare_delete(s)),
        }
        pieces.push(Piece::Table(s));
        out.touched
            .push((super::family_name(s.family), s.name.clone()));
    }
    for l in &live {
        if !saved
            .iter()
            .any(|s| s.family == l.family && s.name == l.name)
        {
            out.conflicts.push(format!(
                "nftables: live table {} is not in the image",
                super::table_id(l)
            ));
        }
    }
    if !pieces.is_empty() {
        out.step = Some(NfnlStep { pieces, undo });
    }
    Ok(out)
}

fn invalid(label: &str, e: String) -> NetstateError {
    NetstateError::invalid(format!("saved nftables table {label}: {e}"))
}

/// Equal in normal form without counters, list by list.
fn same(a: &NftTable, b: &NftTable) -> std::result::Result<bool, String> {
    for obj in Obj::ALL {
        if obj == Obj::Element {
            // one set's elements may come in several messages, in hash order
            if norm::elements_by_set(&a.elements)? != norm::elements_by_set(&b.elements)? {
                return Ok(false);
            }
            continue;
        }
        let (x, y) = (obj.of(a), obj.of(b));
        if x.len() != y.len() {
            return Ok(false);
        }
        for (p, q) in x.iter().zip(y) {
            if p != q && normalize(obj, p, false)? != normalize(obj, q, false)? {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Nothing a restore over it would lose: no rules, sets, objects, flowtables or user chains,
/// and every base chain's policy accepts.
fn is_empty(t: &NftTable) -> bool {
    t.rules.is_empty()
        && t.sets.is_empty()
        && t.objects.is_empty()
        && t.flowtables.is_empty()
        && t.chains.iter().all(|c| norm::chain_is_empty_base(c))
}

fn delete(t: &NftTable) -> Msg {
    let mut payload = vec![u8::try_from(t.family).unwrap_or(0), 0, 0, 0];
    payload.extend(norm::string_attr(1, &t.name));
    Msg {
        ty: msg_type(NFT_MSG_DELTABLE),
        flags: 0,
        payload,
        what: format!("delete table {}", table_label(t)),
    }
}

/// Deletes `t` whether or not it still exists (an undo must not fail on what another undo
/// step removed first): declare it, then delete it.
fn declare_delete(t: &NftTable) -> [Msg; 2] {
    let mut payload = vec![u8::try_from(t.family).unwrap_or(0), 0, 0, 0];
    payload.extend(norm::string_attr(1, &t.name));
    let declare = Msg {
        ty: msg_type(super::NFT_MSG_NEWTABLE),
        flags: NLM_F_CREATE,
        payload,
        what: format!("declare table {}", table_label(t)),
    };
    [declare, delete(t)]
}

/// The messages that rebuild `t`, in dependency order: the rules of chains bound to a rule
/// (`jump { ... }`) go before the rules that bind them, since a bound chain takes no rules.
fn replay<'a>(t: &'a NftTable, f: &mut dyn FnMut(Out<'a>)) {
    let mut binding = Vec::new();
    for obj in Obj::ALL {
        let flags = match obj {
            Obj::Rule => NLM_F_CREATE | NLM_F_APPEND,
            _ => NLM_F_CREATE,
        };
        let out = |i: usize, p: &'a super::Payload| {
            let mut extra = Vec::new();
            if obj == Obj::Rule {
                if let Some(c) = norm::rule_compat(p) {
                    extra = c;
                }
            }
            if obj == Obj::Set {
                // NFT_MSG_NEWSET requires a transaction-unique NFTA_SET_ID (dumps carry none)
                let id = u32::try_from(i + 1).unwrap_or(u32::MAX);
                extra.extend(norm::be32_attr(NFTA_SET_ID, id));
            }
            Out {
                ty: msg_type(obj.new_msg()),
                flags,
                payload: p,
                extra,
                what: What::Saved { obj, i, table: t },
            }
        };
        let list = obj.of(t);
        if obj != Obj::Rule {
            for (i, p) in list.iter().enumerate() {
                if obj == Obj::Chain && norm::chain_flags(p) & norm::CHAIN_BINDING != 0 {
                    if let Some(c) = norm::chain_name(p) {
                        binding.push(c);
                    }
                }
                f(out(i, p));
            }
            continue;
        }
        let bound = |p: &[u8]| {
            !binding.is_empty() && norm::rule_chain(p).is_some_and(|c| binding.contains(&c))
        };
        for (i, p) in list.iter().enumerate().filter(|(_, p)| bound(p)) {
            f(out(i, p));
        }
        for (i, p) in list.iter().enumerate().filter(|(_, p)| !bound(p)) {
            f(out(i, p));
        }
    }
}

/// "rule 3 of chain ip filter INPUT", "set ip filter s", ...
fn describe(obj: Obj, p: &[u8], i: usize, table: &str) -> String {
    let name = match obj {
        Obj::Table => return format!("table {table}"),
        Obj::Chain => norm::chain_name(p),
        Obj::Set => norm::set_name(p),
        Obj::Element => {
            return format!(
                "elements of set {table} {}",
                norm::elem_set(p).unwrap_or_default()
            )
        }
        Obj::Rule => {
            return format!(
                "rule of chain {table} {}",
                norm::rule_chain(p).unwrap_or_default()
            )
        }
        Obj::Object | Obj::Flowtable => norm::obj_name(p),
    };
    match name {
        Some(n) => format!("{} {table} {n}", obj.name()),
        None => format!("{} {i} of table {table}", obj.name()),
    }
}

/// Runs one transaction in `ns`; the error names the first message the kernel refused.
pub(super) fn transact(ns: &NetNs, msgs: &[Msg], op: &str) -> Result<()> {
    match transact_raw(ns, msgs, op)? {
        Ok(()) => Ok(()),
        Err((i, e)) => Err(refused(ns, msgs, op, i, &e)),
    }
}

/// [`transact`], the kernel's refusal given back as (index of the message, error) for a
/// caller that has an answer to some errno.
pub(super) fn transact_raw(
    ns: &NetNs,
    msgs: &[Msg],
    op: &str,
) -> Result<std::result::Result<(), (usize, NlError)>> {
    let sent = send(
        ns,
        &|f| msgs.iter().for_each(|m| f(m.out())),
        op,
        &mut || true,
    )?;
    Ok(sent.unwrap_or(Ok(())))
}

/// Calls its argument with each message of a transaction, in order.
type Walk<'w> = &'w dyn Fn(&mut dyn FnMut(Out<'_>));

/// [`transact`] of the messages `msgs` walks (see [`crate::nl::TxWalk`]), sent once `go`
/// allows it; false when it did not.
fn transact_walk(ns: &NetNs, msgs: Walk, op: &str, go: Go) -> Result<bool> {
    let Some(sent) = send(ns, msgs, op, go)? else {
        return Ok(false);
    };
    let Err((i, e)) = sent else {
        return Ok(true);
    };
    let mut what = None;
    let mut n = 0;
    msgs(&mut |o| {
        if n == i {
            what = Some(o.what());
        }
        n += 1;
    });
    Err(refused_as(ns, op, &e, what))
}

/// Builds the messages `msgs` walks into one transaction and sends it once `go` allows it
/// (None when it did not).
fn send(
    ns: &NetNs,
    msgs: Walk,
    op: &str,
    go: Go,
) -> Result<Option<std::result::Result<(), (usize, NlError)>>> {
    let hdr = |ty: u16| Req::Raw {
        msg_type: ty,
        payload: [[0u8, 0], SUBSYS.to_be_bytes()].concat(),
    };
    let probe = Req::Raw {
        msg_type: msg_type(NFT_MSG_GETGEN),
        payload: vec![0; 4],
    };
    let each = |emit: &mut crate::nl::Emit| msgs(&mut |o| emit(o.ty, o.flags, o.payload, &o.extra));
    ns.with_netfilter(|nl| {
        let batch = nl.build_transaction(&hdr(BATCH_BEGIN), &each, &hdr(BATCH_END));
        if !go() {
            return Ok(None);
        }
        nl.send_transaction(batch, &probe, op).map(Some)
    })
}

/// The error for message `i` of `msgs` that the kernel refused with `e`.
pub(super) fn refused(ns: &NetNs, msgs: &[Msg], op: &str, i: usize, e: &NlError) -> NetstateError {
    refused_as(ns, op, e, msgs.get(i).map(|m| m.what.clone()))
}

/// The error for a message the kernel refused with `e`, named by `what`.
fn refused_as(ns: &NetNs, op: &str, e: &NlError, what: Option<String>) -> NetstateError {
    NetstateError::Netlink {
        op: format!("{op}:"),
        object: what.unwrap_or_else(|| "the transaction".to_string()),
        netns: ns.name().to_string(),
        source: match &e.ext {
            Some(m) => std::io::Error::new(e.io().kind(), format!("{m}: {}", e.io())),
            None => e.io(),
        },
    }
}

impl NfnlStep<'_> {
    /// Applies the step, every table or none, once `go` allows it (its batch built first);
    /// false when `go` did not.
    pub(crate) fn apply(&self, ns: &NetNs, go: Go) -> Result<bool> {
        transact_walk(
            ns,
            &|f| walk(&self.pieces, f),
            "restore nftables tables",
            go,
        )
    }

    /// The transaction that puts back what was live before [`NfnlStep::apply`], as data.
    pub(crate) fn undo(&self) -> NfnlUndo {
        NfnlUndo(self.undo.clone())
    }
}

/// The transaction that undoes an applied [`NfnlStep`]: data the restore journal keeps on
/// disk, run by a rollback or by a later recovery alike.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct NfnlUndo(Vec<Msg>);

impl NfnlUndo {
    pub(super) fn new(msgs: Vec<Msg>) -> NfnlUndo {
        NfnlUndo(msgs)
    }

    pub(crate) fn run(&self, ns: &NetNs) -> Result<()> {
        transact(ns, &self.0, "undo nftables restore")
    }
}

/// Replays one saved table into `ns` in its own transaction (a private namespace that shows
/// it in rule syntax): nothing to compare with and nothing to undo there.
pub(crate) fn load(ns: &NetNs, t: &NftTable) -> Result<()> {
    transact_walk(ns, &|f| replay(t, f), "load nftables table", &mut || true).map(drop)
}
