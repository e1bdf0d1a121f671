//! A Kafka bootstrap string (brokers, TLS scheme, `tls_*` parameters) parses or fails
//! with a permanent error, never a panic; what parses names at least one `host:port`
//! broker with a port, and asks for TLS whenever a TLS parameter was given.
#![no_main]
use essaim_connect_kafka::tls::Bootstrap;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Bootstrap::parse(text) {
        Ok(bootstrap) => {
            assert!(!bootstrap.brokers.is_empty());
            for broker in &bootstrap.brokers {
                let (_, port) = broker.rsplit_once(':').expect("host:port");
                assert!(port.parse::<u16>().is_ok_and(|port| port > 0));
            }
            if bootstrap.ca_file.is_some() || bootstrap.identity.is_some() {
                assert!(bootstrap.tls);
            }
        }
        Err(error) => assert!(!error.transient),
    }
});
