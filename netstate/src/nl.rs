//! A synchronous rtnetlink socket for the namespace thread: dumps, and batched writes.
//!
//! rtnetlink sends one request per `sendmsg` and tops out near 60-95k requests/s; packing
//! many requests into one large `sendmsg` reaches the kernel's own limit (140-250k/s). The
//! kernel processes every message of a `sendmsg` in order and answers each with its own ack
//! (an error in one does not stop the rest), so a batch returns one result per request.
//! NETLINK_CAP_ACK keeps error acks small; NETLINK_EXT_ACK adds the kernel's reason text.
//! netlink-packet-route has no nexthop (RTM_*NEXTHOP) messages, so requests can also be raw.

use std::io;

use nix::sys::socket::{setsockopt, sockopt};

use netlink_packet_core::{
    NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_MULTIPART, NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::error::{NetstateError, Result};

const NLMSG_HDRLEN: usize = 16;
const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_OVERRUN: u16 = 4;
const NLMSGERR_ATTR_MSG: u16 = 1;
/// bytes of requests per sendmsg; acks for a chunk must fit the receive buffer
const CHUNK_BYTES: usize = 1 << 20;
const BUF_BYTES: usize = 32 << 20;

/// One request of a batch.
pub enum Req {
    Route(RouteNetlinkMessage),
    /// message type and payload (after the netlink header), for messages the crate lacks
    Raw {
        msg_type: u16,
        payload: Vec<u8>,
    },
}

impl Req {
    /// The message type and payload (after the netlink header): the form a request takes on
    /// disk (the restore journal) and is sent again as [`Req::Raw`].
    pub fn to_raw(&self) -> (u16, Vec<u8>) {
        let mut out = Vec::new();
        let ty = self.payload_into(&mut out);
        (ty, out)
    }

    /// Appends the payload (after the netlink header) to `out`, without copying the message;
    /// returns the message type.
    pub fn payload_into(&self, out: &mut Vec<u8>) -> u16 {
        match self {
            Req::Raw { msg_type, payload } => {
                out.extend_from_slice(payload);
                *msg_type
            }
            Req::Route(m) => {
                use netlink_packet_core::NetlinkSerializable;
                let start = out.len();
                out.resize(start + m.buffer_len(), 0);
                m.serialize(&mut out[start..]);
                m.message_type()
            }
        }
    }
}

/// The kernel's answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NlError {
    pub errno: i32,
    pub ext: Option<String>,
}

impl NlError {
    pub fn io(&self) -> io::Error {
        io::Error::from_raw_os_error(self.errno)
    }
}

impl std::fmt::Display for NlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.ext {
            Some(m) => write!(f, "{}: {}", m, self.io()),
            None => write!(f, "{}", self.io()),
        }
    }
}

pub struct Nl {
    sock: Socket,
    /// the netlink family (NETLINK_ROUTE, NETLINK_NETFILTER), for the floor's recording
    protocol: isize,
    seq: u32,
    netns: String,
    rbuf: Vec<u8>,
    /// what [`Nl::batch`] sends, kept between calls: allocated afresh per call (up to 1 MiB),
    /// it was faulted in again for each request and each chunk of routes
    wbuf: Vec<u8>,
    pub requests: u64,
    /// the last dump stopped because the kernel flagged it interrupted (NLM_F_DUMP_INTR)
    interrupted: bool,
}

impl std::fmt::Debug for Nl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Nl({})", self.netns)
    }
}

impl Nl {
    /// Opens an rtnetlink socket in the calling thread's namespace; `netns` only names it in
    /// errors.
    pub fn new(netns: &str) -> Result<Nl> {
        Self::with_protocol(netns, NETLINK_ROUTE, "NETLINK_ROUTE")
    }

    /// A socket of another netlink family (NETLINK_NETFILTER for nftables), used through
    /// `Req::Raw` requests; framing, batching and acks are the same.
    pub fn with_protocol(netns: &str, protocol: isize, name: &str) -> Result<Nl> {
        let err = |op: &str, source: io::Error| NetstateError::Netlink {
            op: op.to_string(),
            object: format!("{name} socket"),
            netns: netns.to_string(),
            source,
        };
        let mut sock = Socket::new(protocol).map_err(|e| err("open", e))?;
        sock.bind_auto().map_err(|e| err("bind", e))?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(|e| err("connect", e))?;
        sock.set_cap_ack(true)
            .map_err(|e| err("set NETLINK_CAP_ACK on", e))?;
        sock.set_ext_ack(true)
            .map_err(|e| err("set NETLINK_EXT_ACK on", e))?;
        // Force sizes past rmem_max: we are root, and a batch's acks must not overflow.
        let raised = setsockopt(&sock, sockopt::SndBufForce, &BUF_BYTES)
            .and_then(|()| setsockopt(&sock, sockopt::RcvBufForce, &BUF_BYTES));
        if let Err(e) = raised {
            // without CAP_NET_ADMIN fall back to the default size; batches get smaller acks
            tracing::debug!("raising netlink buffer: {e}");
        }
        Ok(Nl {
            sock,
            protocol,
            seq: 1,
            netns: netns.to_string(),
            rbuf: vec![0; 1 << 20],
            wbuf: Vec::new(),
            requests: 0,
            interrupted: false,
        })
    }

    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// The socket's descriptor.
    pub(crate) fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.sock.as_raw_fd()
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1).max(1);
        self.seq
    }

    fn encode(req: &Req, flags: u16, seq: u32, out: &mut Vec<u8>) {
        // serialized in place, the header filled in after: no copy of the message
        frame(flags, seq, out, |out| req.payload_into(out));
    }

    fn send_all(&self, buf: &[u8], op: &str) -> Result<()> {
        let n = self
            .sock
            .send(buf, 0)
            .map_err(|source| NetstateError::Netlink {
                op: format!("send {op} batch"),
                object: format!("of {} bytes", buf.len()),
                netns: self.netns.clone(),
                source,
            })?;
        if n != buf.len() {
            return Err(self.protocol(op, format!("short send {n} of {}", buf.len())));
        }
        Ok(())
    }

    fn protocol(&self, op: &str, what: String) -> NetstateError {
        NetstateError::Protocol {
            op: op.to_string(),
            netns: self.netns.clone(),
            what,
        }
    }

    fn recv(&mut self, op: &str) -> Result<usize> {
        loop {
            match self.sock.recv(&mut &mut self.rbuf[..], 0) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(NetstateError::Netlink {
                        op: format!("receive {op} reply"),
                        object: String::new(),
                        netns: self.netns.clone(),
                        source,
                    })
                }
            }
        }
    }

    /// Sends every request (with NLM_F_REQUEST added to `flags`) packed into as few
    /// `sendmsg` calls as fit, and returns one result per request, in order.
    ///
    /// No request asks for an ack: the kernel answers only those that fail, and each chunk
    /// ends with an NLMSG_NOOP that does ask for one. The kernel handles a chunk's requests in
    /// order inside the `sendmsg` that carries them, so once the no-op's ack arrives every
    /// error of the chunk has arrived before it, and a request without one succeeded. That
    /// spares the kernel an ack message per request and us reading it (100,000 routes: 100,000
    /// acks fewer).
    pub fn batch(
        &mut self,
        reqs: &[Req],
        flags: u16,
        op: &str,
    ) -> Result<Vec<Result<(), NlError>>> {
        let mut results: Vec<Result<(), NlError>> = Vec::with_capacity(reqs.len());
        let mut i = 0;
        let mut buf = std::mem::take(&mut self.wbuf);
        buf.reserve(CHUNK_BYTES + 4096);
        while i < reqs.len() {
            buf.clear();
            let first_seq = self.seq.wrapping_add(1);
            let start = i;
            while i < reqs.len() && (buf.len() < CHUNK_BYTES || i == start) {
                let seq = self.next_seq();
                Self::encode(&reqs[i], flags | NLM_F_REQUEST, seq, &mut buf);
                i += 1;
            }
            let probe_seq = self.next_seq();
            if self.seq < first_seq {
                // sequence numbers wrapped inside a chunk: restart numbering and resend
                self.seq = 0;
                i = start;
                continue;
            }
            encode_raw(
                NLMSG_NOOP,
                NLM_F_REQUEST | NLM_F_ACK,
                probe_seq,
                &[],
                &mut buf,
            );
            crate::floor::netlink(self.protocol, op, &buf);
            self.send_all(&buf, op)?;
            self.requests += (i - start) as u64;
            results.extend((start..i).map(|_| Ok(())));
            self.errors_until(probe_seq, op, |seq, res| {
                if seq >= first_seq && seq < probe_seq {
                    results[start + (seq - first_seq) as usize] = res;
                }
            })?;
        }
        buf.clear();
        self.wbuf = buf;
        Ok(results)
    }

    /// One request, one answer.
    pub fn request(&mut self, req: Req, flags: u16, op: &str) -> Result<Result<(), NlError>> {
        let mut r = self.batch(std::slice::from_ref(&req), flags, op)?;
        Ok(r.pop().unwrap_or(Err(NlError {
            errno: libc::EIO,
            ext: None,
        })))
    }

    /// Dumps and returns the raw payload (after the netlink header) of every answer message.
    pub fn dump_raw(&mut self, req: &Req, op: &str) -> Result<Vec<(u16, Vec<u8>)>> {
        let mut out = Vec::new();
        self.dump_visit(req, op, &mut |v| {
            match v {
                Visit::Restart => out.clear(),
                Visit::Msg(ty, payload) => out.push((ty, payload.to_vec())),
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Dumps, handing each answer message's type and raw payload to `f` as it is read (a
    /// caller that converts them keeps no copy of the dump); an interrupted dump runs again
    /// from the start, after [`Visit::Restart`] (the caller drops what it gathered).
    pub fn dump_visit(
        &mut self,
        req: &Req,
        op: &str,
        f: &mut dyn FnMut(Visit) -> Result<()>,
    ) -> Result<()> {
        let mut attempt = 0;
        loop {
            let r = self.dump_each(req, NLM_F_DUMP, op, |ty, payload| {
                f(Visit::Msg(ty, payload))
            });
            match r {
                Err(_) if self.retry_dump(&mut attempt) => f(Visit::Restart)?,
                Err(e) => return Err(e),
                Ok(()) => return Ok(()),
            }
        }
    }

    /// Whether a dump that just failed should run again: the kernel flags a dump
    /// interrupted (NLM_F_DUMP_INTR) when the table changed while it was read, which another
    /// thread restoring a neighbouring namespace does all the time, and so does the kernel's
    /// own IPv6 work on links that just came up (at 2,000 links it changes the address table
    /// for seconds); a fresh dump is consistent. Up to 40 times, waiting 1, 2, ... 10 ms and
    /// then 10 ms between them (about 0.35 s in all), then the error stands.
    fn retry_dump(&mut self, attempt: &mut u32) -> bool {
        if !self.interrupted || *attempt >= 40 {
            return false;
        }
        *attempt += 1;
        std::thread::sleep(std::time::Duration::from_millis(u64::from(
            (*attempt).min(10),
        )));
        true
    }

    /// A non-dump raw request and the payload of its one answer message.
    pub fn get_raw(&mut self, req: &Req, op: &str) -> Result<Option<(u16, Vec<u8>)>> {
        let mut out = None;
        self.dump_each(req, 0, op, |ty, payload| {
            out = Some((ty, payload.to_vec()));
            Ok(())
        })?;
        Ok(out)
    }

    /// Sends `msgs` as one nfnetlink transaction (between `begin` and `end`, in one
    /// `sendmsg`, since the kernel only commits a batch that arrives whole), then `probe` (a
    /// request with one answer) to learn that the batch has been handled: the kernel works
    /// through a batch inside the `sendmsg` that carries it and queues an error for each
    /// message that failed (no acks are asked for, so 50,000 rules do not queue 50,000 acks).
    /// Returns the first failing message's index and error.
    pub fn transaction(
        &mut self,
        begin: &Req,
        msgs: TxWalk,
        end: &Req,
        probe: &Req,
        op: &str,
    ) -> Result<Result<(), (usize, NlError)>> {
        let batch = self.build_transaction(begin, msgs, end);
        self.send_transaction(batch, probe, op)
    }

    /// The batch [`Nl::transaction`] sends, built on this socket (its sequence numbers) but
    /// not sent: a caller may build it before the kernel may see it.
    pub fn build_transaction(&mut self, begin: &Req, msgs: TxWalk, end: &Req) -> Batch {
        // sized once: at 55,000 rules the batch is ~22 MiB, and growing it by doubling held
        // up to half as much again
        let (mut count, mut body) = (0usize, 0usize);
        msgs(&mut |_, _, a, b| {
            count += 1;
            body += NLMSG_HDRLEN + align4(a.len() + b.len());
        });
        let mut buf = Vec::with_capacity(body + 256);
        // sequence numbers must not wrap inside the batch
        if u64::from(self.seq) + count as u64 + 4 > u64::from(u32::MAX) {
            self.seq = 0;
        }
        Self::encode(begin, NLM_F_REQUEST, self.next_seq(), &mut buf);
        let first_seq = self.seq.wrapping_add(1);
        msgs(&mut |ty, flags, payload, extra| {
            let seq = self.next_seq();
            encode_parts(ty, NLM_F_REQUEST | flags, seq, payload, extra, &mut buf);
        });
        Self::encode(end, NLM_F_REQUEST, self.next_seq(), &mut buf);
        Batch {
            buf,
            count,
            first_seq,
        }
    }

    /// Sends a batch [`Nl::build_transaction`] built on this socket, as [`Nl::transaction`].
    pub fn send_transaction(
        &mut self,
        batch: Batch,
        probe: &Req,
        op: &str,
    ) -> Result<Result<(), (usize, NlError)>> {
        let Batch {
            buf,
            count,
            first_seq,
        } = batch;
        if buf.len() + 4096 > BUF_BYTES {
            let want = buf.len() + (1 << 20);
            if let Err(e) = setsockopt(&self.sock, sockopt::SndBufForce, &want) {
                tracing::debug!("raising netlink send buffer: {e}");
            }
        }
        crate::floor::netlink(self.protocol, op, &buf);
        self.send_all(&buf, op)?;
        drop(buf);
        self.requests += count as u64;
        let probe_seq = self.next_seq();
        let mut pbuf = Vec::new();
        Self::encode(probe, NLM_F_REQUEST | NLM_F_ACK, probe_seq, &mut pbuf);
        self.send_all(&pbuf, op)?;
        let mut first_err: Option<(usize, NlError)> = None;
        self.errors_until(probe_seq, op, |seq, res| {
            if let Err(e) = res {
                let idx = (seq.wrapping_sub(first_seq) as usize).min(count);
                if first_err.as_ref().is_none_or(|(i, _)| idx < *i) {
                    first_err = Some((idx, e));
                }
            }
        })?;
        Ok(match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        })
    }

    /// Sends a recorded buffer of requests as it was sent (see [`crate::floor`]) and waits
    /// until the kernel has handled all of it; returns the errno of each message that failed.
    pub fn replay(&mut self, buf: &[u8], op: &str) -> Result<Vec<i32>> {
        self.send_all(buf, op)?;
        // a sequence number no recorded message uses (theirs count up from 1)
        let probe_seq = u32::MAX - 1;
        let mut probe = Vec::new();
        encode_raw(
            NLMSG_NOOP,
            NLM_F_REQUEST | NLM_F_ACK,
            probe_seq,
            &[],
            &mut probe,
        );
        self.send_all(&probe, op)?;
        let mut failed = Vec::new();
        self.errors_until(probe_seq, op, |_, r| {
            failed.extend(r.err().map(|e| e.errno))
        })?;
        Ok(failed)
    }

    /// Reads answers until the ack of `probe_seq`, handing every other NLMSG_ERROR (its
    /// sequence number and result) to `each`.
    fn errors_until(
        &mut self,
        probe_seq: u32,
        op: &str,
        mut each: impl FnMut(u32, Result<(), NlError>),
    ) -> Result<()> {
        loop {
            let n = self.recv(op)?;
            let mut off = 0;
            while off + NLMSG_HDRLEN <= n {
                let h = &self.rbuf[off..n];
                let (len, ty, _, seq) = header(h);
                if len < NLMSG_HDRLEN || off + len > n {
                    return Err(self.protocol(op, format!("bad message length {len}")));
                }
                if ty == NLMSG_ERROR {
                    if seq == probe_seq {
                        return Ok(());
                    }
                    each(seq, parse_ack(&h[NLMSG_HDRLEN..len]));
                }
                off += align4(len);
            }
        }
    }

    /// A non-dump request whose answer is one message (e.g. RTM_GETNSID); returns it parsed.
    pub fn get(
        &mut self,
        req: RouteNetlinkMessage,
        op: &str,
    ) -> Result<Option<RouteNetlinkMessage>> {
        Ok(self.parsed(req, 0, op)?.pop())
    }

    /// Dumps and parses every answer as an rtnetlink message.
    pub fn dump(&mut self, req: RouteNetlinkMessage, op: &str) -> Result<Vec<RouteNetlinkMessage>> {
        self.parsed(req, NLM_F_DUMP, op)
    }

    fn parsed(
        &mut self,
        req: RouteNetlinkMessage,
        flags: u16,
        op: &str,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        let req = Req::Route(req);
        let mut attempt = 0;
        loop {
            match self.parsed_once(&req, flags, op) {
                Err(_) if self.retry_dump(&mut attempt) => continue,
                r => return r,
            }
        }
    }

    fn parsed_once(&mut self, req: &Req, flags: u16, op: &str) -> Result<Vec<RouteNetlinkMessage>> {
        let mut out = Vec::new();
        let netns = self.netns.clone();
        self.dump_each(req, flags, op, |_, whole| {
            let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(whole).map_err(|e| {
                NetstateError::Protocol {
                    op: op.to_string(),
                    netns: netns.clone(),
                    what: format!("decode: {e}"),
                }
            })?;
            if let NetlinkPayload::InnerMessage(m) = m.payload {
                out.push(m);
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Calls `f(type, bytes)` for every message of a dump. For `Req::Route` requests the bytes
    /// are the whole message (header included, for the crate's parser); for raw requests they
    /// are the payload.
    fn dump_each(
        &mut self,
        req: &Req,
        extra_flags: u16,
        op: &str,
        mut f: impl FnMut(u16, &[u8]) -> Result<()>,
    ) -> Result<()> {
        let whole = matches!(req, Req::Route(_));
        self.interrupted = false;
        let seq = self.next_seq();
        let mut buf = Vec::new();
        Self::encode(req, NLM_F_REQUEST | extra_flags, seq, &mut buf);
        self.send_all(&buf, op)?;
        self.requests += 1;
        loop {
            let n = self.recv(op)?;
            let mut off = 0;
            while off + NLMSG_HDRLEN <= n {
                let h = &self.rbuf[off..n];
                let (len, ty, flags, mseq) = header(h);
                if len < NLMSG_HDRLEN || off + len > n {
                    return Err(self.protocol(op, format!("bad message length {len}")));
                }
                let msg = &self.rbuf[off..off + len];
                off += align4(len);
                if mseq != seq {
                    continue;
                }
                if flags & netlink_packet_core::NLM_F_DUMP_INTR != 0 {
                    // read the dump to its end before reporting: the kernel runs one dump
                    // per socket at a time, and a new one (the retry) would get EBUSY
                    self.interrupted = true;
                }
                match ty {
                    NLMSG_DONE if self.interrupted => {
                        return Err(
                            self.protocol(op, "dump interrupted by a concurrent change".into())
                        )
                    }
                    NLMSG_DONE => return Ok(()),
                    NLMSG_ERROR => {
                        let res = parse_ack(&msg[NLMSG_HDRLEN..]);
                        return match res {
                            Ok(()) => Ok(()),
                            Err(e) => Err(NetstateError::Netlink {
                                op: op.to_string(),
                                object: String::new(),
                                netns: self.netns.clone(),
                                source: e.io(),
                            }),
                        };
                    }
                    NLMSG_OVERRUN => return Err(self.protocol(op, "overrun".into())),
                    _ if self.interrupted => {}
                    _ => {
                        let part = if whole { msg } else { &msg[NLMSG_HDRLEN..] };
                        f(ty, part)?;
                        if flags & NLM_F_MULTIPART == 0 {
                            // a plain answer to a non-dump request: nothing follows
                            return Ok(());
                        }
                    }
                }
            }
        }
    }
}

/// (length, type, flags, sequence number) of the netlink header at the start of `h`, which
/// holds at least NLMSG_HDRLEN bytes.
fn header(h: &[u8]) -> (usize, u16, u16, u32) {
    (
        u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize,
        u16::from_ne_bytes([h[4], h[5]]),
        u16::from_ne_bytes([h[6], h[7]]),
        u32::from_ne_bytes([h[8], h[9], h[10], h[11]]),
    )
}

/// What [`Nl::dump_visit`] hands its caller.
pub enum Visit<'a> {
    /// the dump starts again: drop what came so far
    Restart,
    /// an answer message: type and payload
    Msg(u16, &'a [u8]),
}

/// An nfnetlink transaction built and not yet sent (see [`Nl::build_transaction`]).
pub struct Batch {
    buf: Vec<u8>,
    count: usize,
    first_seq: u32,
}

/// The messages of a transaction, walked by the caller's function: it calls its argument
/// with each message's type, flags, and payload in two parts (a saved payload borrowed as it
/// is, and what is appended to it). Walked twice, to size the batch and to fill it, so the
/// caller holds no list of them.
pub type TxWalk<'w> = &'w dyn Fn(&mut Emit);

/// Takes one message of a transaction (see [`TxWalk`]).
pub type Emit<'e> = dyn FnMut(u16, u16, &[u8], &[u8]) + 'e;

/// Appends one netlink message (header, payload) to `out`.
fn encode_raw(msg_type: u16, flags: u16, seq: u32, payload: &[u8], out: &mut Vec<u8>) {
    encode_parts(msg_type, flags, seq, payload, &[], out)
}

/// [`encode_raw`] of the payload `a` followed by `b`.
fn encode_parts(msg_type: u16, flags: u16, seq: u32, a: &[u8], b: &[u8], out: &mut Vec<u8>) {
    frame(flags, seq, out, |out| {
        out.extend_from_slice(a);
        out.extend_from_slice(b);
        msg_type
    });
}

/// Appends one netlink message to `out`: a header, the payload `payload` appends (returning
/// the message type), then padding to 4 bytes.
fn frame(flags: u16, seq: u32, out: &mut Vec<u8>, payload: impl FnOnce(&mut Vec<u8>) -> u16) {
    let start = out.len();
    out.extend_from_slice(&[0; NLMSG_HDRLEN]);
    let msg_type = payload(out);
    let len = (out.len() - start) as u32;
    let h = &mut out[start..start + NLMSG_HDRLEN];
    h[0..4].copy_from_slice(&len.to_ne_bytes());
    h[4..6].copy_from_slice(&msg_type.to_ne_bytes());
    h[6..8].copy_from_slice(&flags.to_ne_bytes());
    h[8..12].copy_from_slice(&seq.to_ne_bytes());
    // the port id stays 0
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Parses the body of an NLMSG_ERROR: i32 error, the (capped) original header, then TLVs.
fn parse_ack(body: &[u8]) -> Result<(), NlError> {
    if body.len() < 4 {
        return Err(NlError {
            errno: libc::EIO,
            ext: None,
        });
    }
    let code = i32::from_ne_bytes([body[0], body[1], body[2], body[3]]);
    if code == 0 {
        return Ok(());
    }
    let mut ext = None;
    // with NETLINK_CAP_ACK only the original header follows (16 bytes), then ext-ack TLVs
    let mut off = 4 + NLMSG_HDRLEN;
    while off + 4 <= body.len() {
        let alen = u16::from_ne_bytes([body[off], body[off + 1]]) as usize;
        let aty = u16::from_ne_bytes([body[off + 2], body[off + 3]]) & 0x3fff;
        if alen < 4 || off + alen > body.len() {
            break;
        }
        if aty == NLMSGERR_ATTR_MSG {
            let s = &body[off + 4..off + alen];
            let s = s.split(|b| *b == 0).next().unwrap_or(&[]);
            ext = Some(String::from_utf8_lossy(s).into_owned());
        }
        off += align4(alen);
    }
    Err(NlError { errno: -code, ext })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_on_disk_is_the_message_without_its_header() {
        let req = crate::link::create::delete_request(7);
        let mut whole = Vec::new();
        Nl::encode(&req, 0, 9, &mut whole);
        let (ty, payload) = req.to_raw();
        let (len, wty, _, seq) = header(&whole);
        assert_eq!((ty, seq), (wty, 9));
        assert_eq!(payload, whole[NLMSG_HDRLEN..len]);
        let again = Req::Raw {
            msg_type: ty,
            payload: payload.clone(),
        };
        let mut other = Vec::new();
        Nl::encode(&again, 0, 9, &mut other);
        assert_eq!(other, whole);
    }

    #[test]
    fn ack_with_ext_message_is_parsed() {
        let mut body = Vec::new();
        body.extend_from_slice(&(-libc::EEXIST).to_ne_bytes());
        body.extend_from_slice(&[0u8; NLMSG_HDRLEN]);
        let msg = b"File exists here\0";
        body.extend_from_slice(&((4 + msg.len()) as u16).to_ne_bytes());
        body.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        body.extend_from_slice(msg);
        let e = parse_ack(&body).unwrap_err();
        assert_eq!(e.errno, libc::EEXIST);
        assert_eq!(e.ext.as_deref(), Some("File exists here"));
        assert_eq!(parse_ack(&0i32.to_ne_bytes()), Ok(()));
    }
}
