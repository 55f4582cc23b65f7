# Reference build (a): ESP32-S3-WROOM-1-N16R8, SIMCom SIM7600 LTE modem, u-blox NEO-M8N
# GNSS receiver, 10 keys on GPIOs, 10 LEDs on two 74HC595s. One class per hardware
# revision, data only; hardware/esp32s3-sim7600-m8n.md is the same pin map as a table.
from boards.esp32 import ESP32Board


class ESP32S3SIM7600M8N_R1(ESP32Board):
    name = "esp32s3-sim7600-m8n"
    revision = "1"
    chip = "esp32s3"
    module = "ESP32-S3-WROOM-1-N16R8"
    modem = "SIM7600"
    gnss = "NEO-M8N"
    modem_uart = (1, 115200)
    gnss_uart = (2, 9600)
    hc595_count = 2
    buzzer_hz = 4000
    pins = {
        "modem_tx": 17,
        "modem_rx": 18,
        "modem_pwrkey": 16,
        "modem_reset": 15,
        "modem_dtr": 3,
        "modem_ri": 6,
        "gnss_tx": 5,
        "gnss_rx": 4,
        "gnss_pps": 8,
        "key_0": 1,
        "key_1": 2,
        "key_2": 9,
        "key_3": 10,
        "key_4": 11,
        "key_5": 12,
        "key_6": 13,
        "key_7": 14,
        "key_8": 21,
        "key_9": 47,
        "hc595_data": 38,
        "hc595_clock": 39,
        "hc595_latch": 40,
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
        "buzzer": 41,
        "ignition_sense": 42,
        "supply_sense": 7,
        "status_led": 48,
    }
