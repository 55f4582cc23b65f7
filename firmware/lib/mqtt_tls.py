# TLS to the broker: loaded only when the unit's config asks for it (broker_tls), so a
# unit on plain MQTT never carries this code or the ssl module's objects in its heap.


def context(cafile):
    """An SSL context that trusts only the CA certificate in `cafile` (PEM or DER) and
    requires the broker's certificate to be signed by it and to carry its name. No CA,
    no link: OSError or ValueError, never an unverified connection."""
    import ssl

    from mqtt import MQTTError

    try:
        with open(cafile, "rb") as f:
            ca = f.read()
    except OSError:
        raise MQTTError("TLS: no CA file %r" % cafile)
    if b"-----" in ca:  # PEM: MicroPython's ssl takes DER
        import binascii

        ca = binascii.a2b_base64(ca.split(b"-----")[2])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=ca)
    return ctx
