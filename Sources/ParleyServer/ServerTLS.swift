import ParleyWeb
import Foundation
import ParleyCore
import ParleyIO

/// TLS for the listener: the configured certificate, or a self-signed one
/// in DATA_DIR/tls (generated on first start, reused after).
enum ServerTLS {
    /// The server context and the lines to print (certificate path and SHA-256 fingerprint).
    static func context(config: ServerConfig) throws -> (TLSContext, [String]) {
        let cert: String, key: String, origin: String
        if let c = config.tlsCert, let k = config.tlsKey {
            (cert, key, origin) = (c, k, "configured")
        } else {
            let dir = config.dataDir + "/tls"
            cert = dir + "/cert.pem"
            key = dir + "/key.pem"
            if FileManager.default.fileExists(atPath: cert) && FileManager.default.fileExists(atPath: key) {
                origin = "self-signed"
            } else {
                try FileManager.default.createDirectory(atPath: config.dataDir, withIntermediateDirectories: true)
                var names = ["DNS:localhost", "IP:127.0.0.1", "IP:::1"]
                let host = config.listen.host
                if SocketAddress(ip: host, port: 0) != nil, !["127.0.0.1", "::1"].contains(host), host != "0.0.0.0", host != "::" {
                    names.append("IP:\(host)")
                }
                _ = try TLSCertificate.generateSelfSigned(directory: dir, subjectAltNames: names)
                origin = "self-signed, new"
            }
        }
        let ctx = try TLSContext.server(certificateChainFile: cert, privateKeyFile: key,
                                          recordLayer: config.tlsRecordLayer)
        let fp = try TLSCertificate.sha256Fingerprint(ofPEMFile: cert)
        // The fingerprint is the line's last word (scripts take it from there).
        Logger(label: "parley.tls").info("tls certificate", ["file": .string(cert), "sha256": .string(fp), "origin": .string(origin)])
        return (ctx, ["tls certificate \(cert) sha256 \(fp)"])
    }
}
