//! A private OpenLDAP server for one test: its own directory, TLS certificate (openssl CLI,
//! signed by a CA made for the test), free loopback ports for ldap:// and ldaps://, loaded
//! with tests/fixtures/ldap/directory.ldif. Killed when dropped. Never the system slapd.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Slapd {
    pub dir: PathBuf,
    pub ldap_port: u16,
    pub ldaps_port: u16,
    child: Option<Child>,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/ldap")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA (ca.pem, ca.key) in `dir`.
pub fn make_ca(dir: &Path) {
    run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
        ])
        .args(["-subj", "/CN=Relais test CA", "-keyout", "ca.key", "-out", "ca.pem"])
        .current_dir(dir));
}

impl Slapd {
    /// Starts a slapd whose certificate is signed by a fresh CA in its own directory.
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(crate::harness::unique("relais-slapd"));
        std::fs::create_dir_all(dir.join("db")).unwrap();
        make_ca(&dir);
        run(Command::new("openssl")
            .args(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"])
            .args(["-subj", "/CN=localhost", "-keyout", "server.key", "-out", "server.csr"])
            .current_dir(&dir));
        std::fs::write(
            dir.join("ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        run(Command::new("openssl")
            .args([
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
            ])
            .args(["-days", "2", "-extfile", "ext", "-out", "server.pem"])
            .current_dir(&dir));
        let conf = std::fs::read_to_string(fixtures().join("slapd.conf.in"))
            .unwrap()
            .replace("@DIR@", dir.to_str().unwrap())
            .replace("@FIXTURES@", fixtures().to_str().unwrap());
        std::fs::write(dir.join("slapd.conf"), conf).unwrap();
        run(Command::new("/usr/sbin/slapadd")
            .args(["-f", "slapd.conf", "-l"])
            .arg(fixtures().join("directory.ldif"))
            .current_dir(&dir));
        let mut s = Self {
            dir,
            ldap_port: free_port(),
            ldaps_port: free_port(),
            child: None,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let urls = format!("ldap://127.0.0.1:{}/ ldaps://127.0.0.1:{}/", self.ldap_port, self.ldaps_port);
        // -d 0: stay in the foreground (so the test owns the process) without debug output.
        let child = Command::new("/usr/sbin/slapd")
            .args(["-f", "slapd.conf", "-h", &urls, "-d", "0"])
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("slapd (scripts/test.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.ldaps_port)).is_err() {
            assert!(Instant::now() < deadline, "slapd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    pub fn ldaps(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.ldaps_port)
    }
    pub fn ldap(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.ldap_port)
    }

    /// Starts the stopped server again, same ports and data.
    pub fn restart(&mut self) {
        if self.child.is_none() {
            self.spawn();
        }
    }

    /// Stops the server (as if it crashed).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
