//! `run --netns` (issue 5, done-when 4): the capsule gets 10.200.0.2 on a veth pair in a
//! network namespace of its own; a client in a second namespace this test creates reaches it
//! there. Every address exists only inside those namespaces, which are removed at the end.

use std::process::Command;

use crate::require;
use crate::support::{Env, has, is_root, run_capsule};

/// A named network namespace, deleted on drop.
struct Ns(String);

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn namespaces() -> String {
    String::from_utf8_lossy(&Command::new("ip").args(["netns", "list"]).output().unwrap().stdout).into_owned()
}

#[test]
fn a_capsule_in_its_own_network_namespace_is_reached_at_its_address() {
    require!(is_root() && has("ip") && has("python3"), "root, ip (iproute2) and python3");
    let client = Ns(format!("captest-client-{}", std::process::id()));
    assert!(Command::new("ip").args(["netns", "add", &client.0]).status().unwrap().success());
    let env = Env::new();
    env.small_capsule("netapp", &[("opt/netapp/greeting", b"hello")]);
    let server = "import socket\n\
                  s = socket.socket(); s.bind(('0.0.0.0', 8080)); s.listen(); s.settimeout(20)\n\
                  c, peer = s.accept()\n\
                  g = open('/opt/netapp/greeting').read()\n\
                  c.send(('%s from %s at %s to %s' % (g, socket.gethostname(), c.getsockname()[0], peer[0])).encode())\n\
                  c.close()\n";
    let peer = format!("{}:10.200.0.1/24", client.0);
    let mut capsule = env
        .cmd(&[
            "run",
            "netapp",
            "--netns",
            "--ip",
            "10.200.0.2",
            "--netns-peer",
            &peer,
            "--hostname",
            "netcap",
            "--entry",
            "/usr/bin/python3",
            "--",
            "-c",
            server,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let client_code = "import socket, time\n\
                       for i in range(100):\n\
                       \x20   try:\n\
                       \x20       c = socket.create_connection(('10.200.0.2', 8080), timeout=2); break\n\
                       \x20   except OSError:\n\
                       \x20       time.sleep(0.1)\n\
                       print(c.recv(200).decode())\n";
    let out = Command::new("ip").args(["netns", "exec", &client.0, "python3", "-c", client_code]).output().unwrap();
    let status = capsule.wait().unwrap();
    let capsule_out = capsule.wait_with_output().unwrap();
    assert!(status.success(), "capsule: {}", String::from_utf8_lossy(&capsule_out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "hello from netcap at 10.200.0.2 to 10.200.0.1",
        "client stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The capsule's own namespace went away with it; the host's name did not change.
    assert!(!namespaces().contains("capsule-"), "{}", namespaces());
    let (_, host, _) = run_capsule(&env, &["run", "netapp", "--entry", "/bin/hostname"]);
    assert_ne!(host.trim(), "netcap");
}
