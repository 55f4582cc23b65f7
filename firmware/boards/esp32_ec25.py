# Reference build (b): ESP32-WROOM-32E, Quectel EC25 LTE modem and its own GNSS (NMEA on
# the EC25's debug UART), 10 keys on an MCP23017, 10 LEDs on two 74HC595s. One class per
# hardware revision, data only; hardware/esp32-ec25.md is the same pin map as a table.
from boards.esp32 import ESP32Board


class ESP32EC25_R1(ESP32Board):
    name = "esp32-ec25"
    revision = "1"
    chip = "esp32"
    module = "ESP32-WROOM-32E-N8"
    modem = "EC25"
    gnss = "EC25"
    modem_uart = (1, 115200)
    gnss_uart = (2, 115200)
    i2c = (0, 100000)  # the expander sits on the crew panel, at the end of a cable
    mcp23017_address = 0x20
    hc595_count = 2
    buzzer_hz = 4000
    pins = {
        "modem_tx": 33,
        "modem_rx": 34,
        "modem_pwrkey": 25,
        "modem_reset": 26,
        "modem_dtr": 27,
        "modem_ri": 35,
        "gnss_tx": 32,
        "gnss_rx": 36,
        "i2c_sda": 21,
        "i2c_scl": 22,
        "key_0": "mcp23017.GPA0",
        "key_1": "mcp23017.GPA1",
        "key_2": "mcp23017.GPA2",
        "key_3": "mcp23017.GPA3",
        "key_4": "mcp23017.GPA4",
        "key_5": "mcp23017.GPA5",
        "key_6": "mcp23017.GPA6",
        "key_7": "mcp23017.GPB0",
        "key_8": "mcp23017.GPB1",
        "key_9": "mcp23017.GPB2",
        "hc595_data": 23,
        "hc595_clock": 18,
        "hc595_latch": 19,
        "led_0": "hc595.0",
        "led_1": "hc595.1",
        "led_2": "hc595.2",
        "led_3": "hc595.3",
        "led_4": "hc595.4",
        "led_5": "hc595.5",
        "led_6": "hc595.6",
        "led_7": "hc595.7",
        "led_8": "hc595.8",
        "led_9": "hc595.9",
        "buzzer": 13,
        "ignition_sense": 39,
        "supply_sense": 14,
        "status_led": 4,
    }
