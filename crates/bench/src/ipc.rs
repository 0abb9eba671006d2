//! `bench broadcast` and `bench transport`: the two ways data crosses
//! processes in a run, measured between real processes (this executable,
//! started again in a helper role), next to a plain `memcpy` of the same
//! bytes.

use std::hint::black_box;
use std::os::fd::{AsFd, AsRawFd};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rl_ipc::frame::DecodeScratch;
use rl_ipc::messages::{ToLearner, ToWorker};
use rl_ipc::{Channel, RolloutSlot, WeightBlock};
use rl_policy::Rollout;

/// The hidden first argument of the helper processes.
pub const READER_ROLE: &str = "__broadcast-reader";
pub const WRITER_ROLE: &str = "__transport-writer";

const WAIT: Option<Duration> = Some(Duration::from_secs(60));

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// A helper process and our end of its channel.
struct Helper {
    child: Child,
    channel: Channel,
}

impl Helper {
    fn start(role: &str) -> Result<Helper, String> {
        let (channel, theirs) = Channel::pair().map_err(err)?;
        let inherited = theirs.inheritable().map_err(err)?;
        let child = Command::new(std::env::current_exe().map_err(err)?)
            .args([role, &inherited.as_raw_fd().to_string()])
            .stdin(Stdio::null())
            .spawn()
            .map_err(err)?;
        drop(inherited);
        Ok(Helper { child, channel })
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.channel.send(&ToWorker::Stop.encode(), &[]);
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The channel a helper process inherited (its only argument).
fn helper_channel(args: &[String]) -> Result<Channel, String> {
    let fd: i32 = args
        .first()
        .and_then(|a| a.parse().ok())
        .ok_or("a helper needs its channel's descriptor")?;
    // SAFETY: the parent passed this descriptor for this process to own.
    unsafe { Channel::from_inherited(fd) }.map_err(err)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Seconds per plain copy of `bytes` bytes (median of `trials`).
fn memcpy_seconds(bytes: usize, trials: usize) -> f64 {
    let source = vec![7u8; bytes];
    let mut target = vec![0u8; bytes];
    let mut times: Vec<f64> = (0..trials.max(5))
        .map(|_| {
            let t = Instant::now();
            target.copy_from_slice(black_box(&source));
            black_box(&target);
            t.elapsed().as_secs_f64()
        })
        .collect();
    median(&mut times)
}

/// `bench broadcast`: the learner publishes a weight set and tells each
/// worker (two reader processes) to read it, as at the start of every round;
/// the time runs until every reader has reported holding the new version.
pub fn broadcast() -> Result<(), String> {
    const READERS: usize = 2;
    for &len in &[10_000usize, 1_000_000, 10_000_000] {
        let weights: Vec<f32> = (0..len).map(|i| i as f32 * 1e-3).collect();
        let mut block = WeightBlock::create(len).map_err(err)?;
        let readers: Vec<Helper> = (0..READERS)
            .map(|_| Helper::start(READER_ROLE))
            .collect::<Result<_, _>>()?;
        for r in &readers {
            r.channel.send(b"block", &[block.fd()]).map_err(err)?;
        }
        let trials = if len >= 10_000_000 { 21 } else { 101 };
        let (mut total, mut publish) = (Vec::new(), Vec::new());
        let mut buf = Vec::new();
        for version in 0..trials as u64 {
            let t = Instant::now();
            block.publish(&weights, version).map_err(err)?;
            let published = t.elapsed().as_secs_f64();
            for r in &readers {
                r.channel
                    .send(&ToWorker::Collect { version }.encode(), &[])
                    .map_err(err)?;
            }
            for r in &readers {
                let got = r.channel.recv(&mut buf, WAIT).map_err(err)?;
                let held = u64::from_le_bytes(buf[..got.len.min(8)].try_into().map_err(err)?);
                if held != version {
                    return Err(format!(
                        "a reader holds version {held}, published {version}"
                    ));
                }
            }
            // The first trials page the mappings in; steady state is what a
            // run sees at every round.
            if version >= 3 {
                total.push(t.elapsed().as_secs_f64());
                publish.push(published);
            }
        }
        let copy = memcpy_seconds(len * 4, trials);
        let ours = median(&mut total);
        println!(
            "{}",
            serde_json::json!({
                "bench": "weight_broadcast",
                "params": len,
                "bytes": len * 4,
                "readers": READERS,
                "publish_to_all_read_us": ours * 1e6,
                "publish_us": median(&mut publish) * 1e6,
                "memcpy_us": copy * 1e6,
                "target_us": 2.0 * copy * 1e6 + 100.0,
                "ratio_to_memcpy": ours / copy,
                "met": ours <= 2.0 * copy + 100e-6,
            })
        );
    }
    Ok(())
}

/// A reader process of `bench broadcast`.
pub fn broadcast_reader(args: &[String]) -> Result<(), String> {
    let channel = helper_channel(args)?;
    let mut buf = Vec::new();
    let got = channel.recv(&mut buf, WAIT).map_err(err)?;
    let fd = got.fds.into_iter().next().ok_or("no block descriptor")?;
    let block = WeightBlock::open(fd).map_err(err)?;
    let mut out = vec![0.0_f32; block.len()];
    loop {
        let got = channel.recv(&mut buf, None).map_err(err)?;
        match ToWorker::decode(&buf[..got.len]).map_err(err)? {
            ToWorker::Stop => return Ok(()),
            ToWorker::Collect { .. } => {
                let version = block.read_into(&mut out).map_err(err)?.unwrap_or(u64::MAX);
                black_box(&out);
                channel.send(&version.to_le_bytes(), &[]).map_err(err)?;
            }
        }
    }
}

/// A CartPole-shaped rollout (obs 4, action 1) of `num_steps` x 64 envs.
fn synthetic_rollout(num_steps: usize) -> Rollout {
    let num_envs = 64;
    let mut r = Rollout::default();
    r.reshape(num_steps, num_envs, 4, 1);
    for (i, x) in r.obs.iter_mut().enumerate() {
        *x = (i % 1000) as f32 * 1e-3;
    }
    r.actions.fill(1.0);
    r.log_probs.fill(-0.7);
    r.values.fill(0.5);
    r.rewards.fill(1.0);
    r
}

/// Steps of 64 envs whose payload is about `bytes` bytes: per env step,
/// 4 * (4 obs + 1 action + 4 scalars) + 2 flag bytes.
fn steps_for(bytes: usize) -> usize {
    (bytes / (4 * 9 + 2) / 64).max(1)
}

/// `bench transport`: a writer process encodes rollouts into its slot and
/// sends their headers; this process copies each out of the slot with every
/// check the learner makes, then asks for the next: one round of the
/// runtime's protocol, in bytes of payload per second.
pub fn transport() -> Result<(), String> {
    for &kib in &[64usize, 1024, 8 * 1024, 64 * 1024] {
        let num_steps = steps_for(kib * 1024);
        let writer = Helper::start(WRITER_ROLE)?;
        writer
            .channel
            .send(&(num_steps as u64).to_le_bytes(), &[])
            .map_err(err)?;
        let mut buf = Vec::new();
        let got = writer.channel.recv(&mut buf, WAIT).map_err(err)?;
        let ToLearner::Hello { slot_capacity, .. } =
            ToLearner::decode(&buf[..got.len]).map_err(err)?
        else {
            return Err("the writer did not say hello".into());
        };
        let fd = got.fds.into_iter().next().ok_or("no slot descriptor")?;
        let slot = RolloutSlot::open(fd, slot_capacity as usize).map_err(err)?;
        let mut scratch = DecodeScratch::default();
        let mut received = Rollout::default();
        let mut snapshot = Vec::new();
        let mut payload = 0;
        let messages = (512 * 1024 / kib).clamp(8, 2000);
        let mut start = Instant::now();
        for version in 0..messages as u64 + 2 {
            if version == 2 {
                // Two warm-up rounds page the slot and the buffers in.
                start = Instant::now();
            }
            writer
                .channel
                .send(&ToWorker::Collect { version }.encode(), &[])
                .map_err(err)?;
            let got = writer.channel.recv(&mut buf, WAIT).map_err(err)?;
            let ToLearner::Rollout(header) = ToLearner::decode(&buf[..got.len]).map_err(err)?
            else {
                return Err("expected a rollout header".into());
            };
            slot.read(&header, &mut scratch, &mut received, &mut snapshot)
                .map_err(err)?;
            black_box(&received);
            payload = header.payload_len as usize;
        }
        let elapsed = start.elapsed().as_secs_f64();
        let ours = (payload * messages) as f64 / elapsed;
        let copy = payload as f64 / memcpy_seconds(payload, messages);
        println!(
            "{}",
            serde_json::json!({
                "bench": "rollout_transport",
                "payload_bytes": payload,
                "messages": messages,
                "bytes_per_s": ours,
                "memcpy_bytes_per_s": copy,
                "fraction_of_memcpy": ours / copy,
                "target_fraction": 0.25,
            })
        );
    }
    Ok(())
}

/// The writer process of `bench transport`.
pub fn transport_writer(args: &[String]) -> Result<(), String> {
    let channel = helper_channel(args)?;
    let mut buf = Vec::new();
    let got = channel.recv(&mut buf, WAIT).map_err(err)?;
    let num_steps = u64::from_le_bytes(buf[..got.len.min(8)].try_into().map_err(err)?) as usize;
    let rollout = synthetic_rollout(num_steps);
    let capacity = rl_ipc::frame::max_payload_len(num_steps, 64, 4, 1).ok_or("too large")?;
    let mut slot = RolloutSlot::create(capacity as usize).map_err(err)?;
    let hello = ToLearner::Hello {
        worker: 0,
        generation: 0,
        slot_capacity: capacity,
    };
    channel
        .send(&hello.encode(), &[slot.fd().as_fd()])
        .map_err(err)?;
    loop {
        let got = channel.recv(&mut buf, None).map_err(err)?;
        match ToWorker::decode(&buf[..got.len]).map_err(err)? {
            ToWorker::Stop => return Ok(()),
            ToWorker::Collect { version } => {
                let header = slot.write(0, 0, version, &rollout, &[]).map_err(err)?;
                channel
                    .send(&ToLearner::Rollout(header).encode(), &[])
                    .map_err(err)?;
            }
        }
    }
}
