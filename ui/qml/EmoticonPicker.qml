// The built-in emoticons in a grid; a click sends one.
import QtQuick 2.15
import QtQuick.Controls 2.15
import "."

Popup {
    id: popup
    width: 6 * 64 + 24
    height: 2 * 64 + 24
    padding: 12
    background: Rectangle { color: "white"; radius: 10; border.color: Theme.line }

    signal sent()   // an emoticon was handed to the bridge to send

    GridView {
        anchors.fill: parent
        cellWidth: 64
        cellHeight: 64
        model: bridge.emoticons
        interactive: false
        delegate: ItemDelegate {
            required property string modelData
            width: 64
            height: 64
            objectName: "emoticon_" + modelData
            contentItem: Image {
                source: bridge.emoticonSource(modelData)
                sourceSize.width: 96
                fillMode: Image.PreserveAspectFit
                asynchronous: true
            }
            background: Rectangle { radius: 8; color: parent.hovered ? Theme.selected : "transparent" }
            onClicked: {
                bridge.sendEmoticon(modelData)
                popup.sent()
                popup.close()
            }
            ToolTip.visible: hovered
            ToolTip.delay: 600
            ToolTip.text: modelData
        }
    }
}
