include $(sort $(wildcard $(BR2_EXTERNAL_STATICLET_PATH)/package/*/*.mk))
